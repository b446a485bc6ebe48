"""Dataset indexers: which videos, which label, which split — for three layouts.

- FaceForensics++ (official layout): `original_sequences/youtube/<q>/videos/071.mp4` (real),
  `manipulated_sequences/<method>/<q>/videos/071_054.mp4` (fake), split files
  `train.json`/`val.json`/`test.json` (in the root or `splits/`) holding id pairs like
  ["071", "054"]: both ids' originals and both orders of the fake are in that split.
- Celeb-DF v2: `Celeb-real/`, `YouTube-real/`, `Celeb-synthesis/` and
  `List_of_testing_videos.txt` (`<1 real|0 fake> <subdir>/<file>`): listed videos are `test`,
  a stable 10 % of the others `val`, the rest `train`.
- generic: `real/` and `fake/` (any depth; `fake/<method>/...` names the manipulation method),
  optional `split.json` = {"train": [...], "val": [...],
  "test": [...]} of paths relative to the root; without it a stable hash of the path assigns
  80 % / 10 % / 10 %.
Labels: 0 = real, 1 = fake.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engines.errors import DfwatchError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("train", "val", "test")
FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


class DatasetError(DfwatchError):
    pass


@dataclass(frozen=True)
class Video:
    path: Path
    label: int          # 0 real, 1 fake
    split: str
    group: str          # e.g. "youtube", "Deepfakes", "Celeb-synthesis", "fake"
    key: str            # root-relative path: a stable id

    @property
    def label_name(self) -> str:
        return "fake" if self.label else "real"


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _require(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path.parent if path.parent != path else path}: not a {layout} root: expected {what}")


# ---- FaceForensics++ -----------------------------------------------------------------------

def _ff_split_ids(root: Path, split: str) -> set[str]:
    for candidate in (root / f"{split}.json", root / "splits" / f"{split}.json"):
        if candidate.is_file():
            try:
                pairs = json.loads(candidate.read_text())
                return {str(i) for pair in pairs for i in pair}
            except (json.JSONDecodeError, TypeError) as e:
                raise DatasetError(f"{candidate}: not a FaceForensics++ split file (a JSON list of id pairs): {e}") from None
    raise DatasetError(f"{root}: no {split}.json split file (in the root or splits/); FaceForensics++ ships "
                       "train.json, val.json and test.json")


def index_faceforensics(root: Path, split: str, quality: str = "c23",
                        methods: tuple[str, ...] = FF_METHODS) -> list[Video]:
    originals = root / "original_sequences" / "youtube" / quality / "videos"
    _require(originals, f"original_sequences/youtube/{quality}/videos", "FaceForensics++")
    ids = _ff_split_ids(root, split)
    videos = [Video(p, 0, split, "youtube", str(p.relative_to(root))) for p in _videos(originals) if p.stem in ids]
    for method in methods:
        folder = root / "manipulated_sequences" / method / quality / "videos"
        if not folder.is_dir():
            continue
        for p in _videos(folder):
            parts = p.stem.split("_")
            if len(parts) == 2 and parts[0] in ids and parts[1] in ids:
                videos.append(Video(p, 1, split, method, str(p.relative_to(root))))
    return videos


# ---- Celeb-DF v2 ---------------------------------------------------------------------------

def index_celebdf(root: Path, split: str) -> list[Video]:
    for sub in ("Celeb-real", "YouTube-real", "Celeb-synthesis"):
        _require(root / sub, "Celeb-real/, YouTube-real/ and Celeb-synthesis/", "Celeb-DF v2")
    listing = root / "List_of_testing_videos.txt"
    if not listing.is_file():
        raise DatasetError(f"{root}: no List_of_testing_videos.txt (Celeb-DF v2's test list)")
    test = set()
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if line.strip():
            flag, _, rel = line.strip().partition(" ")
            if flag not in ("0", "1") or not rel:
                raise DatasetError(f"{listing}:{n}: expected '<1 real|0 fake> <subdir>/<file>', got {line!r}")
            test.add(rel.strip())
    videos = []
    for sub, label in (("Celeb-real", 0), ("YouTube-real", 0), ("Celeb-synthesis", 1)):
        for p in _videos(root / sub):
            rel = str(p.relative_to(root))
            # Celeb-DF has no validation list: a stable 10 % of the non-test videos
            video_split = "test" if rel in test else ("val" if _hash_split(rel) == "val" else "train")
            if video_split == split:
                videos.append(Video(p, label, split, sub, rel))
    return videos


# ---- generic -------------------------------------------------------------------------------

def _hash_split(rel: str) -> str:
    h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 10
    return "train" if h < 8 else "val" if h == 8 else "test"


def index_generic(root: Path, split: str) -> list[Video]:
    for sub in ("real", "fake"):
        _require(root / sub, "real/ and fake/ folders", "generic dataset")
    split_file = root / "split.json"
    assignment = None
    if split_file.is_file():
        try:
            assignment = {rel: s for s, rels in json.loads(split_file.read_text()).items() for rel in rels}
        except (json.JSONDecodeError, AttributeError, TypeError) as e:
            raise DatasetError(f"{split_file}: expected {{\"train\": [paths], \"val\": [...], \"test\": [...]}}: {e}") from None
    videos = []
    for sub, label in (("real", 0), ("fake", 1)):
        for p in _videos(root / sub):
            rel = str(p.relative_to(root))
            video_split = assignment.get(rel) if assignment is not None else _hash_split(rel)
            if video_split == split:
                videos.append(Video(p, label, split, _generic_group(sub, rel), rel))
    return videos


def _generic_group(sub: str, rel: str) -> str:
    """fake/<method>/... -> <method> (for the per-method protocols); otherwise 'real' or 'fake'."""
    parts = Path(rel).parts
    return parts[1] if sub == "fake" and len(parts) > 2 else sub


# ---- entry point ---------------------------------------------------------------------------

INDEXERS = {"faceforensics": index_faceforensics, "celebdf": index_celebdf, "generic": index_generic}


def detect_layout(root: Path) -> str:
    if (root / "original_sequences").is_dir():
        return "faceforensics"
    if (root / "Celeb-synthesis").is_dir():
        return "celebdf"
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "generic"
    raise DatasetError(f"{root}: not a dataset root: expected FaceForensics++ (original_sequences/), "
                       "Celeb-DF v2 (Celeb-real/, Celeb-synthesis/) or generic (real/, fake/)")


def index_dataset(root: str | Path, split: str, layout: str = "auto", **options) -> list[Video]:
    """The videos of one split; raises DatasetError with what was expected when the root is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in INDEXERS:
        raise DatasetError(f"unknown dataset layout {layout!r}: one of auto, {', '.join(INDEXERS)}")
    videos = INDEXERS[layout](root, split, **options)
    if not videos:
        raise DatasetError(f"{root}: no videos for split '{split}' ({layout} layout); check the split file and folders")
    return videos
