"""Training-test helpers: a cached video's sampled frames, as the daemon would receive them."""
from __future__ import annotations

from pathlib import Path

import cv2

from training.cache import cache_path, read_entry


def sampled_frames(cache: Path, video) -> list[tuple]:
    """(pixels, seq, t_capture, t_mono) of the frames extraction sampled from `video`, decoded again."""
    entry = read_entry(cache_path(cache, video))
    wanted = entry["frame_indices"].tolist()
    cap = cv2.VideoCapture(str(video.path), cv2.CAP_FFMPEG)
    frames = [cap.read()[1] for _ in range(max(wanted) + 1)]
    cap.release()
    return [(frames[index], seq, float(entry["times"][seq]), float(entry["times"][seq]))
            for seq, index in enumerate(wanted)]
