"""Short video files cut from the real footage, for tests that need a file of their own."""
from __future__ import annotations

from pathlib import Path

import cv2


def write_clip(source: Path, path: Path, frames: int, fourcc: str = "mp4v", fps: float = 24.0,
               size: tuple[int, int] = (360, 288), start: int = 0) -> Path:
    """`frames` frames of `source` from frame `start`, re-encoded with `fourcc` at `fps`."""
    cap = cv2.VideoCapture(str(source))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for _ in range(frames):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    return path
