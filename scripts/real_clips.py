#!/usr/bin/env python3
"""Cuts real clips from a long real video, for `dfwatch eval --real` (docs/ACCURACY.md):

    scripts/real_clips.py VIDEO OUT_DIR --count 4 --seconds 20 --every 50

writes OUT_DIR/<name>_<i>.mp4, `count` clips of `seconds` each, starting every `every` seconds
(the frames as decoded, re-encoded with OpenCV's mp4v at the source's frame rate and size)."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2


def cut(source: Path, out: Path, start_s: float, seconds: float) -> int:
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(start_s * fps))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    written = 0
    for _ in range(int(seconds * fps)):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame)
        written += 1
    writer.release()
    cap.release()
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--every", type=float, default=50.0, help="seconds between clip starts")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for i in range(a.count):
        path = a.out / f"{a.video.stem}_{i}.mp4"
        print(f"{path}: {cut(a.video, path, i * a.every, a.seconds)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
