"""Evidence for alerts: what the detector saw, kept for a person to look at afterwards.

For every alert, `<evidence dir>/<stream>/<alert_id>/` holds
  window.webm  the frames of the window that opened the alert, at the analysis rate, with the
               followed face's box and the window's score drawn on them
  faces.jpg    a contact sheet of that window's face crops
  alert.json   the alert's messages so far (start, updates, end)

Nothing here runs in the inference loop except `FrameStore.add` (a resize of each frame to
`frame_width` pixels, kept until no window can need it) and `EvidenceWriter.submit`, which never
blocks: the files are written by one background thread from a bounded queue, and when the disk
cannot keep up the job is dropped and counted. An alert's files are written into a hidden
`.<alert_id>.writing` folder that is renamed into place only when all of them are complete, so a
full disk leaves no half clip behind (the folder is removed, the loss counted and logged); the
writer then reports the alert as `completed`, and only then does the inference process publish the
paths (an `update` naming them): no message names a file that was not written. After each alert's
files, the oldest alerts are deleted while the directory holds more than `max_bytes` or they are
older than `max_age_days`: only alert folders dfwatch made (daemon/outcomes/store.py), never
through a link, never outside the directory. Files are 0640, folders 0750, whatever the umask.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon.outcomes.reviews import read_review
from daemon.outcomes.store import (ALERT_MARKER, FILE_MODE, adopt_legacy, alert_folder, alert_folders, folder_bytes,
                                   make_private_dir, write_private)
from daemon.wire.protocol import Alert
from engines.logs import get_logger

log = get_logger()
FILES = ("window.webm", "faces.jpg", "alert.json")


def default_dir() -> Path:
    """$STATE_DIRECTORY/evidence under systemd (StateDirectory=), else the XDG data directory."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "evidence"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "dfwatch" / "evidence"


class Downscaler:
    """One thread that shrinks the frames kept for evidence off the inference loop: OpenCV's
    resize (0.05-0.09 ms a frame on the reference CPU) releases the GIL, so it runs on another
    core while the loop goes on. Shared by every stream's FrameStore."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name="evidence-frames", daemon=True)
        self.thread.start()

    def submit(self, slot: "_Kept", width: int) -> None:
        self.jobs.put((slot, width))

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            slot, width = job
            slot.shrink(width)

    def close(self) -> None:
        self.jobs.put(None)


class _Kept:
    """One kept frame: the received pixels until shrunk, then the small copy in I420 (4:2:0 YUV,
    half the bytes of BGR: the frames kept are most of a stream's memory). One attribute,
    replaced whole, so a reader never sees a frame with another frame's scale."""
    __slots__ = ("value",)

    def __init__(self, pixels: np.ndarray):
        self.value: tuple[np.ndarray, float, bool] = (pixels, 1.0, False)   # (frame, scale, shrunk)

    def shrink(self, width: int) -> tuple[np.ndarray, float]:
        pixels, scale, shrunk = self.value
        if not shrunk:
            scale = min(1.0, width / pixels.shape[1])
            size = (2 * round(pixels.shape[1] * scale / 2), 2 * round(pixels.shape[0] * scale / 2))  # I420: even sides
            small = pixels if size == (pixels.shape[1], pixels.shape[0]) else cv2.resize(
                pixels, size, interpolation=cv2.INTER_LINEAR)
            self.value = (cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420), size[0] / pixels.shape[1], True)
        return self.value[:2]


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """A kept frame (I420: 2-D, 3/2 of the height) as BGR; a BGR frame as it is."""
    return cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420) if frame.ndim == 2 else frame


class FrameStore:
    """One stream's recent frames, downscaled to `width` pixels, by sequence number; holds at most
    `capacity` (a window plus the frames that arrive before its verdict). Memory per stream:
    capacity * width * height * 1.5 bytes (I420): at the defaults (T 32, stride 8: 56 frames of
    320x240) 6.5 MB. With a `Downscaler` the loop only keeps a reference (the resize happens on its thread);
    without one, `add` resizes at once."""

    def __init__(self, width: int, capacity: int, downscaler: Downscaler | None = None):
        self.width, self.capacity, self.downscaler = width, capacity, downscaler
        self.frames: OrderedDict[int, _Kept] = OrderedDict()

    def add(self, seq: int, pixels: np.ndarray) -> None:
        """In the inference loop, for every frame: bilinear (these frames are for people, not
        models), on the downscaler's thread when there is one."""
        kept = self.frames[seq] = _Kept(pixels)
        if self.downscaler is not None:
            self.downscaler.submit(kept, self.width)
        else:
            kept.shrink(self.width)
        while len(self.frames) > self.capacity:
            self.frames.popitem(last=False)

    def get(self, seq: int) -> tuple[np.ndarray, float] | None:
        """(frame in I420: `as_bgr` shows it, scale to it from the received frame), shrinking it
        now if its turn has not come."""
        kept = self.frames.get(seq)
        return kept.shrink(self.width) if kept is not None else None


@dataclass
class WindowEvidence:
    """The opening window of an alert, ready to write: frames (as FrameStore keeps them: the
    writer makes them BGR, off the loop), face boxes (frame pixels of the stored frames, None
    without a face), the window's score, the analysis rate."""
    alert: Alert
    frames: list[np.ndarray]
    boxes: list[np.ndarray | None]
    score: float
    fps: float


def relative_paths(alert: Alert) -> list[str]:
    return [f"{alert.stream}/{alert.alert_id}/{name}" for name in FILES]


class EvidenceWriter:
    def __init__(self, root: Path, max_bytes: int, max_age_days: float, queue_size: int = 16):
        self.root, self.max_bytes, self.max_age_s = Path(root), max_bytes, max_age_days * 86400
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self.written = self.dropped = self.failed = 0
        self.bytes = 0               # the store's size after the last retention pass
        self._adopted = False        # the directory's older alert folders marked as ours (once)
        self.completed: deque[Alert] = deque()  # alerts whose files are all written (read by the loop)
        self.thread = threading.Thread(target=self._work, name="evidence", daemon=True)
        self.thread.start()

    # -- the inference loop's side: never blocks --------------------------------------------------
    def submit(self, job) -> bool:
        """Queues a WindowEvidence or an Alert message (appended to alert.json); False when full."""
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def counters(self) -> dict[str, int]:
        """What the status and metrics report of the store."""
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed, "bytes": self.bytes,
                "queued": self.jobs.qsize()}

    def close(self, timeout: float = 5.0) -> None:
        """Writes what is queued for up to `timeout` seconds in all, then stops the thread (what
        is still queued then is lost with the process: a stop keeps its budget)."""
        deadline = time.monotonic() + timeout
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(max(0.0, deadline - time.monotonic()))

    # -- the writer thread ------------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                if isinstance(job, WindowEvidence):
                    self._write_window(job)
                    self.written += 1
                    self.completed.append(job.alert)
                    self._retain()
                else:
                    self._append(job)
            except Exception as e:  # a full or broken disk loses evidence, never the daemon
                self.failed += 1
                log.error("evidence not written", stream=job.stream if isinstance(job, Alert) else job.alert.stream,
                          error=f"{type(e).__name__}: {e}", dir=str(self.root))

    def folder(self, alert: Alert) -> Path:
        return self.root / alert.stream / alert.alert_id

    def _write_window(self, ev: WindowEvidence) -> None:
        folder = self.folder(ev.alert)
        scratch = folder.with_name(f".{folder.name}.writing")
        try:
            if not self._adopted:
                adopt_legacy(self.root)   # alerts of a dfwatch before markers are ours too
                self._adopted = True
            make_private_dir(scratch)
            frames = [as_bgr(f) for f in ev.frames]
            write_video(scratch / "window.webm", annotated(frames, ev.boxes, ev.score, ev.alert.untrained), ev.fps)
            sheet = cv2.imencode(".jpg", contact_sheet(frames, ev.boxes))[1]
            write_private(scratch / "faces.jpg", sheet.tobytes())
            _write_json(scratch / "alert.json", [asdict(ev.alert)])
            write_private(scratch / ALERT_MARKER, ev.alert.alert_id + "\n")
            if folder.exists():  # the same alert's window written again (the benchmark does): the new one wins
                shutil.rmtree(folder)
            scratch.replace(folder)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)  # no half clip, no sheet-less folder left behind
            raise

    def _append(self, alert: Alert) -> None:
        folder = alert_folder(self.root, alert.stream, alert.alert_id)
        if folder is None:
            return  # its window was dropped or lost: no folder to add to
        path = folder / "alert.json"
        _write_json(path, json.loads(path.read_text()) + [asdict(alert)])

    def _retain(self) -> None:
        """Deletes the oldest alert folders while over max_bytes, and any older than max_age_days:
        alert folders dfwatch made only (store.alert_folders: no link, nothing of anyone else's)."""
        sized = []
        for f in alert_folders(self.root):
            try:
                sized.append((os.lstat(f).st_mtime, folder_bytes(f), f))
            except OSError:
                continue
        sized.sort()
        total, now = sum(size for _, size, _ in sized), time.time()
        for mtime, size, folder in sized[:-1]:  # never the alert just written
            if total <= self.max_bytes and now - mtime <= self.max_age_s:
                break
            shutil.rmtree(folder, ignore_errors=True)  # rmtree never follows a link inside
            total -= size
        self.bytes = total


def _write_json(path: Path, data) -> None:
    """Atomically (a reader never sees half a file), 0640; a failed write leaves no temporary file."""
    tmp = path.with_suffix(".tmp")
    try:
        write_private(tmp, json.dumps(data, indent=1))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def annotated(frames: list[np.ndarray], boxes: list, score: float, untrained: bool = False) -> list[np.ndarray]:
    """The frames with the face box and the score drawn on; an untrained bundle's clip says so on
    every frame (a clip travels without the page that explains it)."""
    out = []
    for frame, box in zip(frames, boxes):
        img = frame.copy()
        if box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
        cv2.putText(img, f"P(fake) {score:.2f}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        if untrained:
            h = img.shape[0]
            cv2.rectangle(img, (0, h - 26), (img.shape[1], h), (0, 0, 0), -1)
            cv2.putText(img, "UNTRAINED bundle: score means nothing", (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 255, 255), 1)
        out.append(img)
    return out


def stored_alerts(root: Path, limit: int) -> list[dict]:
    """The latest message of each of the newest `limit` alerts in the store, oldest first: the
    dashboard's alert list survives its restarts. Unreadable folders are skipped."""
    found = []
    for folder in alert_folders(Path(root)):   # never a link, never a folder dfwatch did not make
        path = folder / "alert.json"
        try:
            messages = json.loads(path.read_text())
            latest = dict(messages[-1])
        except (OSError, ValueError, IndexError, TypeError):
            continue
        review = read_review(path.parent)  # a person's word on it (the dashboard), if any
        found.append({**latest, "review": review["review"]} if review else latest)
    found = [m for m in found if isinstance(m, dict) and "alert_id" in m and "t_start" in m]
    return sorted(found, key=lambda m: m["t_start"])[-limit:]


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """VP8 in Matroska (the container WebM restricts): an encoder the pip OpenCV wheel has (it has
    no H.264 one) and a file browsers play, so the dashboard shows the clip; OpenCV, ffmpeg and
    VLC play it too. Written as .mkv and renamed: for a .webm name OpenCV prints a codec-tag
    warning straight to stderr, a plain-text line amid the JSON log."""
    h, w = frames[0].shape[:2]
    scratch = path.with_name(path.stem + ".writing.mkv")
    writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*"VP80"), max(fps, 1.0), (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {scratch} with the VP8 encoder")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    os.chmod(scratch, FILE_MODE)   # OpenCV creates it as the umask says: faces are not for every user
    scratch.replace(path)


def contact_sheet(frames: list[np.ndarray], boxes: list, side: int = 96, columns: int = 8) -> np.ndarray:
    """The window's face crops (the centre when a frame had no face) in a grid."""
    crops = []
    for frame, box in zip(frames, boxes):
        h, w = frame.shape[:2]
        if box is None:
            s = min(h, w)
            x1, y1, x2, y2 = (w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2
        else:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1))
        crops.append(cv2.resize(frame[y1:y2, x1:x2], (side, side), interpolation=cv2.INTER_AREA))
    rows = -(-len(crops) // columns)
    sheet = np.zeros((rows * side, columns * side, 3), np.uint8)
    for i, crop in enumerate(crops):
        r, c = divmod(i, columns)
        sheet[r * side:(r + 1) * side, c * side:(c + 1) * side] = crop
    return sheet
