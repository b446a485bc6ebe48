"""The per-stream window logic on its own: each frame detected and encoded once, each clip
computed once, windows every stride, the final window at end of stream; with `select: all`, a
window per face track that never mixes two people. Models are replaced by arithmetic here (the
logic is model-free); the daemon tests run it with the real models."""
from __future__ import annotations

import numpy as np
import pytest

from engines.pipeline.analysis import StreamAnalysis, TrackEnd, WindowInputs, WindowSpec
from engines.pipeline.tracking import TrackingSpec
from engines.pipeline.work import WorkQueues
from engines.families.stylegru import CONTENT_NORM, STYLE_NORM
from engines.pipeline.preprocess import CropSpec, Face, Normalization

FACE = Face(box=np.array([40.0, 30.0, 90.0, 90.0]), landmarks=np.zeros((5, 2)), prob=0.99)


def make(frames=8, stride=2, clip=4, min_face=0.5, tracking=None, work=None):
    return StreamAnalysis(WindowSpec(frames, stride, clip, min_face), CropSpec(size=32),
                          Normalization(32, STYLE_NORM.mean, STYLE_NORM.std),
                          Normalization(16, CONTENT_NORM.mean, CONTENT_NORM.std) if clip else None,
                          tracking=tracking, work=work)


def run(a: StreamAnalysis, calls: dict, faces=lambda r: [FACE], ends: list | None = None):
    """Does all queued work like the scheduler would, counting calls per frame/crop/clip."""
    published = []
    while a.work.busy():
        for r in a.work.take("detect"):
            calls[("detect", r.index)] = calls.get(("detect", r.index), 0) + 1
            a.set_detections(r, faces(r))
        for tf in a.work.take("encode"):
            key = ("style", tf.track.id, tf.index)
            calls[key] = calls.get(key, 0) + 1
            a.set_encoding(tf, np.full((1, 512), tf.seq, np.float32))
        for clip in a.work.take("content"):
            calls[("clip", clip.track.id, clip.key)] = calls.get(("clip", clip.track.id, clip.key), 0) + 1
            a.set_content(clip, np.full(2048, clip.key[0], np.float32))
        for item in a.work.take("decide"):
            if isinstance(item, WindowInputs):
                published.append(item)
                a.window_done(item)
            elif ends is not None:
                ends.append(item)
    return published


def frame(i):
    return np.full((96, 128, 3), i % 255, np.uint8)


def test_each_frame_once_each_clip_once_and_a_window_every_stride():
    a, calls, windows = make(), {}, []
    for i in range(30):
        a.add_frame(frame(i), seq=100 + i, t_capture=1000.0 + i, t_mono=float(i))
        windows += run(a, calls)
    assert all(n == 1 for n in calls.values())
    assert sum(k[0] == "detect" for k in calls) == 30
    assert [w.window for w in windows] == list(range(len(windows)))
    assert [(w.seq_first, w.seq_last) for w in windows[:3]] == [(100, 107), (102, 109), (104, 111)]
    w = windows[1]
    assert w.encodings.shape == (8, 1, 512) and list(w.encodings[:, 0, 0]) == list(range(102, 110))
    assert w.content.shape == (2, 2048) and list(w.content[:, 0]) == [2, 6]  # clips [2..5], [6..9]
    clips = [k for k in calls if k[0] == "clip"]
    assert len(clips) < 2 * len(windows)  # clips shared between overlapping windows
    assert a.backlog <= 2  # only the look-ahead frames are waiting


def test_end_of_stream_publishes_the_last_frames():
    a, calls, windows = make(), {}, []
    for i in range(13):
        a.add_frame(frame(i), i, float(i), float(i))
        windows += run(a, calls)
    a.end()
    windows += run(a, calls)
    assert windows[-1].indices == tuple(range(5, 13)) and windows[-1].seq_last == 12
    assert a.finished and all(n == 1 for n in calls.values())


def test_short_stream_is_padded_circularly():
    a, calls = make(), {}
    for i in range(3):
        a.add_frame(frame(i), i, float(i), float(i))
    a.end()
    (w,) = run(a, calls)
    assert w.indices == (0, 1, 2, 0, 1, 2, 0, 1) and w.frames == 3 and w.faces == 3
    # the metadata describes the real frames, not positions in the padded window
    assert (w.seq_first, w.seq_last, w.t_first, w.t_last) == (0, 2, 0.0, 2.0)
    assert list(w.first) == [True] * 3 + [False] * 5


def test_a_padded_window_votes_each_real_frame_once():
    from engines.families.dldfd import DLDFDFamily

    a = make(clip=0)
    for i in range(5):
        a.add_frame(frame(i), i, float(i), float(i))
    a.end()
    for r in a.work.take("detect"):
        a.set_detections(r, [FACE])
    for tf in a.work.take("encode"):
        a.set_encoding(tf, np.float32(0.9 if tf.index < 2 else 0.1))  # frames 0, 1 fake; 2, 3, 4 real
    w, end = a.work.take("decide")
    assert isinstance(end, TrackEnd) and end.track == w.track == 0  # the track's end comes after its last window
    (d,) = DLDFDFamily().decide([w], {}, 0.5)
    assert (d.fake_frames, d.voters, w.frames) == (2, 5, 5) and d.label == "real"  # padded: 4 of 8 would be fake


def test_too_few_faces_is_no_face():
    a, calls, windows = make(min_face=0.5), {}, []
    for i in range(10):
        a.add_frame(frame(i), i, float(i), float(i))
        windows += run(a, calls, faces=lambda r: [FACE] if r.index % 4 == 0 else [])
    assert windows and not windows[0].enough_faces and windows[0].faces == 2


def test_window_spec_validation():
    with pytest.raises(ValueError, match="multiple of clip_frames"):
        WindowSpec(frames=10, clip_frames=4)


# ---- face tracks (select: all) ----------------------------------------------------------------

LEFT = Face(box=np.array([4.0, 30.0, 40.0, 70.0]), landmarks=np.zeros((5, 2)), prob=0.99)
RIGHT = Face(box=np.array([80.0, 20.0, 124.0, 70.0]), landmarks=np.zeros((5, 2)), prob=0.99)


def test_every_face_its_own_windows_that_never_mix_two_people():
    a, calls, ends = make(tracking=TrackingSpec(select="all")), {}, []
    windows = []
    for i in range(20):
        a.add_frame(frame(i), i, float(i), i / 8)
        windows += run(a, calls, faces=lambda r: [RIGHT, LEFT] if r.index % 2 else [LEFT, RIGHT], ends=ends)
    assert a.live_tracks == 2 and a.tracked == 20
    by_track = {t: [w for w in windows if w.track == t] for t in {w.track for w in windows}}
    assert set(by_track) == {1, 2}, by_track  # ids in order of size: the larger face (right) first
    for track, face in ((1, RIGHT), (2, LEFT)):
        ws = by_track[track]
        # windows every stride; the last 2 frames wait for their smoothing neighbours
        assert [w.window for w in ws] == list(range(len(ws))) and len(ws) == (20 - 2 - 8) // 2 + 1
        assert all(np.allclose(w.boxes, face.box) for w in ws)  # only this person's face, every frame
        assert ws[0].seqs == tuple(range(8)) and ws[0].box == pytest.approx(list(face.box / [128, 96, 128, 96]),
                                                                             abs=1e-4)
    assert all(n == 1 for n in calls.values())  # each frame detected once; each crop encoded once
    assert sum(k[0] == "style" for k in calls) == 2 * (20 - 2) and not ends  # 2 faces a frame
    a.end()
    run(a, calls, ends=ends)
    assert sorted(e.track for e in ends) == [1, 2] and a.finished and not a.tracks


def test_a_face_gone_longer_than_lost_s_ends_its_track_with_a_final_window():
    a, calls, ends = make(tracking=TrackingSpec(select="all", lost_s=0.5)), {}, []
    windows = []
    for i in range(30):  # one face for 6 frames (at least min_face_fraction * T), then none
        a.add_frame(frame(i), i, float(i), i / 8)
        windows += run(a, calls, faces=lambda r: [LEFT] if r.index < 6 else [], ends=ends)
    track_windows = [w for w in windows if w.track is not None]
    (final,) = track_windows  # a short track: its 6 frames padded circularly
    assert final.track == 1 and final.frames == 6 and final.enough_faces
    assert [e.track for e in ends] == [1] and ends[0].t_last == 5.0
    # no face for T frames: a stream-level no_face window every stride
    no_face = [w for w in windows if w.track is None]
    assert [w.seqs[-1] for w in no_face] == [13, 15, 17, 19, 21, 23, 25, 27, 29]
    assert all(not w.enough_faces and w.faces == 0 for w in no_face)


def test_a_track_too_short_for_a_window_is_dropped_and_a_faceless_file_says_no_face():
    a, calls, ends = make(tracking=TrackingSpec(select="all", lost_s=0.2)), {}, []
    windows = []
    for i in range(6):  # a face in 2 frames: fewer than min_face_fraction * T = 4
        a.add_frame(frame(i), i, float(i), i / 8)
        windows += run(a, calls, faces=lambda r: [LEFT] if r.index < 2 else [], ends=ends)
    a.end()
    windows += run(a, calls, ends=ends)
    (w,) = windows
    assert w.track is None and w.frames == 6 and not w.enough_faces and not ends
    assert a.finished


def test_max_tracks_counts_the_faces_it_drops():
    a, calls = make(tracking=TrackingSpec(select="all", max_tracks=1)), {}
    for i in range(3):
        a.add_frame(frame(i), i, float(i), i / 8)
        run(a, calls, faces=lambda r: [LEFT, RIGHT])
    assert a.faces_dropped == 3 and set(a.tracks) == {1}
    assert a.tracks[1].frames[0].chosen is RIGHT  # the larger face is analysed


def test_a_discarded_stream_leaves_the_shared_queues_and_its_work_is_skipped():
    work = WorkQueues()
    a, b = make(work=work), make(work=work)
    for i in range(3):
        a.add_frame(frame(i), i, float(i), float(i))
        b.add_frame(frame(i), i, float(i), float(i))
    assert work.waiting["detect"] == 6 and a.pending_work == 3
    a.discard()
    assert work.waiting["detect"] == 3 and a.pending_work == 0
    taken = work.take("detect")
    assert [r.owner for r in taken] == [b, b, b] and not work.busy()


def test_pixels_are_freed_once_every_track_cropped_them():
    a, calls = make(tracking=TrackingSpec(select="all")), {}
    records = []
    for i in range(6):
        records.append(a.add_frame(frame(i), i, float(i), i / 8))
        run(a, calls, faces=lambda r: [LEFT, RIGHT])
    assert all(r.pixels is None for r in records[:4])   # both faces cropped
    assert all(r.pixels is not None for r in records[4:])  # waiting for their smoothing neighbours
    a.end()
    run(a, calls)
    assert all(r.pixels is None for r in records)
