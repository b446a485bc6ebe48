"""Evidence files for alerts: written off the hot path (a slow disk drops and counts, never
blocks), readable by OpenCV, retained within bytes and age limits; served end to end in
tests/e2e/test_alerts.py."""
from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pytest

from daemon.outcomes import evidence
from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.outcomes.evidence import EvidenceWriter, FrameStore, WindowEvidence, as_bgr, relative_paths
from daemon.outcomes.store import ALERT_MARKER
from daemon.wire.protocol import Verdict


def opened_alert(stream: str = "door", t: float = 100.0):
    v = Verdict(stream=stream, window=0, seq_first=0, seq_last=7, t_first=t - 1, t_last=t, score=0.8, label="fake",
                threshold=0.5, faces=8, frames=8, model="m", backend="torch", latency_ms=1.0)
    tracker = AlertTracker(stream, AlertRules(open_after=1, open_of=1))
    return tracker, tracker.on_verdict(v)


def window(frames_bgr, alert, n: int = 8) -> WindowEvidence:
    store = FrameStore(width=160, capacity=n)
    for seq, frame in enumerate(frames_bgr[:n]):
        store.add(seq, frame)
    small = [store.get(seq)[0] for seq in range(n)]
    scale = store.get(0)[1]
    boxes = [np.array([100.0, 40.0, 220.0, 180.0]) * scale if i % 4 else None for i in range(n)]
    return WindowEvidence(alert, small, boxes, 0.8, 4.0)


def test_frame_store_keeps_a_bounded_downscaled_window(franck_frames):
    store = FrameStore(width=160, capacity=5)
    for seq, frame in enumerate(franck_frames[:12]):
        store.add(seq, frame)
    assert list(store.frames) == [7, 8, 9, 10, 11] and store.get(3) is None
    small, scale = store.get(11)
    h, w = franck_frames[0].shape[:2]
    assert small.shape == (3 * 128 // 2, 160) and scale == pytest.approx(160 / w)  # I420: half the bytes of BGR
    bgr = as_bgr(small)
    assert bgr.shape == (128, 160, 3)
    reference = cv2.resize(franck_frames[11], (160, 128), interpolation=cv2.INTER_LINEAR)
    assert np.abs(bgr.astype(int) - reference).mean() < 3  # what a person sees: the same picture


def test_frames_shrunk_off_the_loop_equal_those_shrunk_in_it(franck_frames):
    import time

    from daemon.outcomes.evidence import Downscaler

    downscaler = Downscaler()
    threaded, inline = FrameStore(width=160, capacity=8, downscaler=downscaler), FrameStore(width=160, capacity=8)
    try:
        for seq, frame in enumerate(franck_frames[:8]):
            threaded.add(seq, frame)
            inline.add(seq, frame)
        first = threaded.get(0)  # shrunk now if the thread has not come to it yet
        deadline = time.monotonic() + 5
        while not threaded.frames[7].value[2] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threaded.frames[7].value[2]  # the thread shrank it without being asked
        for seq in range(8):
            (a, sa), (b, sb) = threaded.get(seq), inline.get(seq)
            assert np.array_equal(a, b) and sa == sb and a.shape[1] == 160
        assert first[0] is threaded.get(0)[0]
    finally:
        downscaler.close()


def test_writes_a_playable_window_a_contact_sheet_and_the_alert_messages(tmp_path, franck_frames):
    tracker, start = opened_alert()
    writer = EvidenceWriter(tmp_path, max_bytes=1 << 30, max_age_days=30)
    assert writer.submit(window(franck_frames, start))
    writer.submit(tracker.end(130.0))
    writer.close()
    folder = tmp_path / "door" / start.alert_id
    assert sorted(p.name for p in folder.iterdir()) == sorted((*evidence.FILES, ALERT_MARKER))
    for path in (folder, *folder.iterdir()):  # faces: owner and group only, whatever the umask (0022 here)
        assert path.stat().st_mode & 0o7 == 0, path
    assert relative_paths(start) == [f"door/{start.alert_id}/{name}" for name in evidence.FILES]
    cap, n = cv2.VideoCapture(str(folder / "window.webm")), 0
    while (frame := cap.read()[1]) is not None:
        n += 1
        assert frame.shape[1] == 160
    assert n == 8
    sheet = cv2.imread(str(folder / "faces.jpg"))
    assert sheet.shape == (96, 8 * 96, 3) and sheet.std() > 10
    messages = json.loads((folder / "alert.json").read_text())
    assert [m["state"] for m in messages] == ["start", "end"] and messages[1]["t_end"] == 130.0
    assert writer.written == 1 and writer.dropped == writer.failed == 0


def test_a_slow_disk_never_blocks_the_caller_and_drops_are_counted(tmp_path, franck_frames, monkeypatch):
    real_write = evidence.write_video

    def slow(*args):
        time.sleep(0.5)
        real_write(*args)
    monkeypatch.setattr(evidence, "write_video", slow)
    writer = EvidenceWriter(tmp_path, max_bytes=1 << 30, max_age_days=30, queue_size=2)
    jobs = [window(franck_frames, opened_alert(t=float(i))[1]) for i in range(10)]
    start = time.perf_counter()
    accepted = [writer.submit(job) for job in jobs]
    elapsed = time.perf_counter() - start
    assert elapsed < 0.2  # ten submissions against a disk that takes 0.5 s a file
    assert writer.dropped == accepted.count(False) >= 6
    writer.close(timeout=10)
    assert writer.written == accepted.count(True)


def stored_alert(root, stream: str, n: int, age_s: float, size: int = 100_000):
    """An alert folder as dfwatch writes them (an alert id's name, its marker), `age_s` old."""
    folder = root / stream / f"{n:032x}"
    folder.mkdir(parents=True)
    (folder / "window.webm").write_bytes(b"x" * size)
    (folder / ALERT_MARKER).write_text(folder.name)
    stamp = time.time() - age_s
    os.utime(folder, (stamp, stamp))
    return folder


def test_retention_deletes_the_oldest_over_size_and_anything_too_old(tmp_path, franck_frames):
    old = [stored_alert(tmp_path, "cam", i, 40 * 86400 if i == 0 else 3600 * (4 - i)) for i in range(4)]  # 0: 40 days
    writer = EvidenceWriter(tmp_path, max_bytes=300_000, max_age_days=30)  # the new alert is about 60 kB
    writer.submit(window(franck_frames, opened_alert("cam")[1]))
    writer.close()
    left = {p.name for p in (tmp_path / "cam").iterdir()}
    assert old[0].name not in left and old[1].name not in left  # too old; then the oldest until under 300 kB
    assert old[3].name in left and len(left) == 3


def test_retention_deletes_only_alert_folders_dfwatch_made_never_through_a_link(tmp_path, franck_frames):
    """Issue 35.1: a person's 60-day-old folder beside the alerts, a folder without the marker, a
    link to a folder outside the evidence directory: all stay; only old alerts go."""
    root, outside = tmp_path / "ev", tmp_path / "elsewhere"
    holiday = root / "photos" / "2025-holiday"
    holiday.mkdir(parents=True)
    (holiday / "beach.jpg").write_bytes(b"x" * 10)
    unmarked = root / "cam" / ("e" * 32)
    unmarked.mkdir(parents=True)
    (outside / ("d" * 32)).mkdir(parents=True)
    (outside / ("d" * 32) / ALERT_MARKER).write_text("a trap")
    (root / "victimlink").symlink_to(outside)
    (root / "cam" / ("c" * 32)).symlink_to(outside / ("d" * 32))
    for path in (holiday.parent, holiday, unmarked, outside, outside / ("d" * 32)):
        os.utime(path, (time.time() - 60 * 86400,) * 2)
    expired = stored_alert(root, "cam", 1, 60 * 86400)
    writer = EvidenceWriter(root, max_bytes=0, max_age_days=30)  # everything but the new alert is due
    writer.submit(window(franck_frames, opened_alert("cam")[1]))
    writer.close()
    assert writer.written == 1 and not expired.exists()
    assert (holiday / "beach.jpg").exists() and unmarked.is_dir() and (outside / ("d" * 32) / ALERT_MARKER).exists()
    assert (root / "victimlink").is_symlink() and (root / "cam" / ("c" * 32)).is_symlink()


def test_an_evidence_directory_of_someone_elses_is_refused(tmp_path):
    from daemon.outcomes.store import EvidenceDirError, check_evidence_dir

    for system in ("/etc", "/", "/usr/share/dfwatch", "/home"):
        with pytest.raises(EvidenceDirError, match="system directory"):
            check_evidence_dir(system)
    check_evidence_dir(tmp_path / "new")                      # missing: dfwatch makes it
    stored_alert(tmp_path / "ours", "cam", 1, 0)
    check_evidence_dir(tmp_path / "ours")                     # what dfwatch wrote
    (tmp_path / "mixed" / "photos" / "2025-holiday").mkdir(parents=True)
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    with pytest.raises(EvidenceDirError, match=r"did not write \(notes.txt, photos/2025-holiday\)"):
        check_evidence_dir(tmp_path / "mixed")
    (tmp_path / "link").symlink_to(tmp_path / "ours")
    with pytest.raises(EvidenceDirError, match="is a link"):
        check_evidence_dir(tmp_path / "link")


def test_alerts_of_an_older_dfwatch_are_adopted_and_kept_in_retention(tmp_path, franck_frames):
    """Folders dfwatch 0.4 wrote (no marker, an alert id's name and alert.json) stay dfwatch's."""
    legacy = tmp_path / "cam" / ("a" * 32)
    legacy.mkdir(parents=True)
    (legacy / "alert.json").write_text("[]")
    os.utime(legacy, (time.time() - 40 * 86400,) * 2)
    writer = EvidenceWriter(tmp_path, max_bytes=1 << 30, max_age_days=30)
    writer.submit(window(franck_frames, opened_alert("cam")[1]))
    writer.close()
    assert not legacy.exists()  # marked as dfwatch's, then due by age


def test_an_unwritable_directory_loses_evidence_not_the_daemon(tmp_path, franck_frames):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer = EvidenceWriter(blocker, max_bytes=1 << 30, max_age_days=30)
    assert writer.submit(window(franck_frames, opened_alert()[1]))
    writer.close()
    assert writer.failed == 1 and writer.written == 0 and writer.thread.is_alive() is False


@pytest.fixture
def full_disk(tmp_path):
    """A real filesystem with almost no room left: a 256 KiB tmpfs, filled but for 16 KiB."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a disk that fills up)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        (mount / "filler").write_bytes(b"\0" * (240 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_no_half_evidence_and_names_no_file(full_disk, franck_frames):
    tracker, start = opened_alert()
    writer = EvidenceWriter(full_disk / "evidence", max_bytes=1 << 30, max_age_days=30)
    assert writer.submit(window(franck_frames, start, n=24))
    writer.submit(tracker.end(130.0))  # its alert.json append finds no folder: nothing half-written either
    writer.close()
    assert writer.failed == 1 and writer.written == 0 and not writer.completed  # nothing to announce
    leftovers = [p.relative_to(full_disk) for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"]
    assert leftovers == []  # no truncated clip, no faces.jpg-less folder, no alert.tmp
    assert writer.counters()["failed"] == 1


def test_an_untrained_bundles_clip_says_so_on_every_frame(franck_frames):
    frames = [f[:, :, :].copy() for f in franck_frames[:3]]
    plain = evidence.annotated(frames, [None] * 3, 0.7)
    marked = evidence.annotated(frames, [None] * 3, 0.7, untrained=True)
    h = frames[0].shape[0]
    for a, b in zip(plain, marked):
        assert (a[: h - 30] == b[: h - 30]).all()  # the picture itself untouched
        band = b[h - 26:]
        assert (band == 0).mean() > 0.5 and (band[..., 1] > 200).sum() > 50  # a black band with yellow text


def test_a_review_is_stored_beside_its_evidence_and_read_back(tmp_path):
    from daemon.outcomes.evidence import stored_alerts
    from daemon.outcomes.reviews import ReviewError, reviewed_alerts, write_review

    tracker, start = opened_alert()
    folder = tmp_path / "door" / start.alert_id
    folder.mkdir(parents=True)
    (folder / "alert.json").write_text(json.dumps([{**start.__dict__}]))
    (folder / ALERT_MARKER).write_text(start.alert_id)
    outside = tmp_path.parent / f"{tmp_path.name}-outside" / start.alert_id   # issue 35.2: a link out
    outside.mkdir(parents=True)
    (outside / "alert.json").write_text("[]")
    (outside / ALERT_MARKER).write_text(start.alert_id)
    (tmp_path / "outlink").symlink_to(outside.parent)
    for stream, alert_id, review in (("../etc", start.alert_id, "confirmed"), ("door", "../../x", "confirmed"),
                                     ("door", start.alert_id, "maybe"), ("door", "f" * 32, "confirmed"),
                                     ("outlink", start.alert_id, "confirmed"), ("..", start.alert_id, "confirmed")):
        with pytest.raises(ReviewError):
            write_review(tmp_path, stream, alert_id, review)
    assert not (outside / "review.json").exists()
    write_review(tmp_path, "door", start.alert_id, "false_alarm", note="the cleaner", reviewer="alice")
    assert stored_alerts(tmp_path, 10)[0]["review"] == "false_alarm"
    assert (folder / "review.json").stat().st_mode & 0o7 == 0
    second = write_review(tmp_path, "door", start.alert_id, "confirmed", note="no: it is fake", reviewer="bob")
    assert [(h["reviewer"], h["review"]) for h in second["history"]] == [("alice", "false_alarm"), ("bob", "confirmed")]
    (reviewed,) = reviewed_alerts(tmp_path)
    assert reviewed["review"] == "confirmed" and reviewed["reviewer"] == "bob" and len(reviewed["history"]) == 2
    assert reviewed["messages"][0]["alert_id"] == start.alert_id
