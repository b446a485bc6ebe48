"""The per-stream window logic on its own: each frame detected and encoded once, each clip
computed once, windows every stride, the final window at end of stream. Models are replaced by
arithmetic here (the logic is model-free); the daemon tests run it with the real models."""
from __future__ import annotations

import numpy as np
import pytest

from engines.pipeline.analysis import StreamAnalysis, WindowSpec
from engines.families.stylegru import CONTENT_NORM, STYLE_NORM
from engines.pipeline.preprocess import CropSpec, Face, Normalization

FACE = Face(box=np.array([40.0, 30.0, 90.0, 90.0]), landmarks=np.zeros((5, 2)), prob=0.99)


def make(frames=8, stride=2, clip=4, min_face=0.5):
    return StreamAnalysis(WindowSpec(frames, stride, clip, min_face), CropSpec(size=32),
                          Normalization(32, STYLE_NORM.mean, STYLE_NORM.std),
                          Normalization(16, CONTENT_NORM.mean, CONTENT_NORM.std))


def run(a: StreamAnalysis, calls: dict, faces=lambda r: [FACE]):
    """Does all pending work like the daemon would, counting calls per frame/clip."""
    published = []
    for r in a.needs_detection():
        calls.setdefault(("detect", r.index), 0)
        calls[("detect", r.index)] += 1
        a.set_detections(r, faces(r))
    for r in a.needs_encoding():
        calls[("style", r.index)] = calls.get(("style", r.index), 0) + 1
        a.set_encoding(r, np.full((1, 512), r.seq, np.float32))
    for key in a.needs_content():
        calls[("clip", key)] = calls.get(("clip", key), 0) + 1
        a.set_content(key, np.full(2048, key[0], np.float32))
    for w in a.ready_windows():
        published.append(w)
        a.window_done(w)
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

    a = StreamAnalysis(WindowSpec(8, 2, 0, 0.5), CropSpec(size=32), Normalization(32, STYLE_NORM.mean, STYLE_NORM.std))
    for i in range(5):
        a.add_frame(frame(i), i, float(i), float(i))
    a.end()
    for r in a.needs_detection():
        a.set_detections(r, [FACE])
    for r in a.needs_encoding():
        a.set_encoding(r, np.float32(0.9 if r.index < 2 else 0.1))  # frames 0, 1 fake; 2, 3, 4 real
    (w,) = a.ready_windows()
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
