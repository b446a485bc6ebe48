"""Wire protocol: round trips, every rejection reason, fuzzing, and a real ZeroMQ socket."""
from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.wire.protocol import (MAX_HEADER_BYTES, PROTOCOL_VERSION, Alert, BridgeStats, CaptureStats,
                                  EndOfStream, Frame, ProtocolError, Status, Verdict, decode_capture)


def make_frame(h=16, w=24, seq=7, stream="cam-1") -> Frame:
    pixels = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    return Frame(stream=stream, seq=seq, t_capture=1700000000.25, t_mono=12.5, pixels=pixels, pos_ms=40.0, gap_s=21.5)


def header(**fields) -> bytes:
    base = {"v": PROTOCOL_VERSION, "kind": "frame", "stream": "s", "seq": 0, "t_capture": 1.0,
            "t_mono": 1.0, "width": 16, "height": 16, "format": "bgr24"}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not ...})


def make_verdict(**kw) -> Verdict:
    d = dict(stream="cam-1", window=3, seq_first=24, seq_last=55, t_first=10.0, t_last=11.5, score=0.8,
             label="fake", threshold=0.5, faces=32, frames=32, model="demo-abc", backend="torch",
             latency_ms=120.0)
    d.update(kw)
    return Verdict(**d)


def test_frame_round_trip_keeps_pixels_and_stamps():
    f = make_frame()
    g = decode_capture([bytes(p) for p in f.encode()])
    assert isinstance(g, Frame)
    assert (g.stream, g.seq, g.t_capture, g.t_mono, g.pos_ms, g.width, g.height, g.gap_s) == \
           ("cam-1", 7, 1700000000.25, 12.5, 40.0, 24, 16, 21.5)
    np.testing.assert_array_equal(g.pixels, f.pixels)
    assert not g.pixels.flags.writeable  # a view on the received buffer, never mutated


def test_eos_and_stats_round_trip():
    e = decode_capture(EndOfStream("a", 41).encode())
    assert e == EndOfStream("a", 41)
    s = CaptureStats("a", frames_read=10, frames_sent=8, reconnects=2, stalls=1, dropped={"queue_full": 2},
                     state="backoff")
    assert decode_capture(s.encode()) == s
    b = BridgeStats("0-webhook", "webhook", delivered=5, dropped=2, rejected=1, retries=3, queue=4, connected=True)
    assert decode_capture(b.encode()) == b
    with pytest.raises(ProtocolError, match="bridge name"):
        decode_capture(BridgeStats("bad name!", "mqtt").encode())


def test_verdict_and_status_round_trip():
    v = make_verdict()
    assert Verdict.decode(v.encode()) == v
    n = make_verdict(score=None, label="no_face", faces=3)
    assert Verdict.decode(n.encode()) == n
    st_ = Status(t=5.0, uptime_s=3.0, model="m", backend="torch",
                 streams={"a": {"frames_in": 3, "dropped": {"queue_full": 1}}}, invalid={"bad_header": 2},
                 stages={"detect": {"calls": 4, "items": 9, "seconds": 0.5}},
                 bridges={"0-mqtt": {"delivered": 3, "dropped": 1}}, evidence={"written": 2, "bytes": 900})
    assert Status.decode(st_.encode()) == st_
    older = msgpack.unpackb(st_.encode()[1])
    del older["stages"]  # a sender from before stage timings
    assert Status.decode([b"status", msgpack.packb(older)]).stages == {}
    with pytest.raises(ProtocolError, match="'stages' must map"):
        Status.decode([b"status", msgpack.packb({**older, "stages": [1, 2]})])
    assert v.encode()[0] == b"verdict.cam-1"


@pytest.mark.parametrize("parts, reason", [
    ([header(v=2), b"x" * 768], "bad_version"),
    ([header(v=...), b"x" * 768], "bad_header"),
    ([b"\xc1garbage", b"x" * 768], "bad_header"),
    ([msgpack.packb([1, 2]), b""], "bad_header"),
    ([b"\x80" + b"\x00" * MAX_HEADER_BYTES, b""], "too_large"),
    ([header(kind="jpeg-frame"), b""], "bad_kind"),
    ([header(stream="no spaces"), b"x" * 768], "bad_stream"),
    ([header(stream=5), b"x" * 768], "bad_stream"),
    ([header(format="rgb48"), b"x" * 768], "bad_format"),
    ([header(width=100000, height=100000), b""], "too_large"),
    ([header(width=5000, height=5000), b""], "too_large"),
    ([header(width=0), b""], "bad_field"),
    ([header(width=True), b"x" * 768], "bad_field"),
    ([header(seq=-1), b"x" * 768], "bad_field"),
    ([header(t_capture=float("nan")), b"x" * 768], "bad_field"),
    ([header(t_mono="now"), b"x" * 768], "bad_field"),
    ([header(width=8, height=8), b"x" * 192], "too_small"),
    ([header(), b"x" * 767], "size_mismatch"),
    ([header()], "bad_parts"),
    ([header(), b"x" * 768, b"extra"], "bad_parts"),
    ([], "bad_parts"),
    ("not a list", "bad_parts"),
    ([header(), 12], "bad_parts"),
    ([EndOfStream("a", 1).encode()[0], b"x"], "bad_parts"),
    ([msgpack.packb({"v": 1, "kind": "stats", "stream": "a", "frames_read": 1, "frames_sent": 1,
                     "reconnects": 0, "stalls": 0, "dropped": {"q": -1}, "state": "x"})], "bad_field"),
])
def test_capture_rejections_carry_reason(parts, reason):
    with pytest.raises(ProtocolError) as e:
        decode_capture(parts)
    assert e.value.reason == reason


@pytest.mark.parametrize("kw", [dict(score=1.5), dict(score=None), dict(label="maybe"),
                                dict(label="no_face"), dict(stream="bad stream")])
def test_verdict_rejections(kw):
    parts = make_verdict().encode()
    payload = msgpack.unpackb(parts[1])
    payload.update(kw)
    with pytest.raises(ProtocolError):
        Verdict.decode([parts[0], msgpack.packb(payload)])


def test_verdict_topic_must_match_stream():
    parts = make_verdict().encode()
    with pytest.raises(ProtocolError, match="does not match"):
        Verdict.decode([b"verdict.other", parts[1]])


part = st.one_of(st.binary(max_size=256), st.integers(), st.text(max_size=8), st.none(),
                 st.builds(lambda d: msgpack.packb(d), st.dictionaries(
                     st.sampled_from(["v", "kind", "stream", "seq", "t_capture", "t_mono", "width",
                                      "height", "format", "pos_ms", "dropped", "state", "gap_s", "detail"]),
                     st.one_of(st.integers(-2, 10**12), st.floats(allow_nan=True), st.text(max_size=10),
                               st.booleans(), st.none(), st.binary(max_size=8),
                               st.dictionaries(st.text(max_size=4), st.integers(-1, 5), max_size=3)),
                     max_size=12)))


@settings(max_examples=400, deadline=None)
@given(st.lists(part, max_size=4))
def test_decoder_only_returns_messages_or_raises_protocol_error(parts):
    try:
        msg = decode_capture(parts)
    except ProtocolError as e:
        assert e.reason
        return
    assert isinstance(msg, (Frame, EndOfStream, CaptureStats, BridgeStats))
    if isinstance(msg, Frame):
        assert msg.pixels.nbytes == msg.width * msg.height * 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.binary(max_size=64))
def test_random_bytes_never_escape_as_other_errors(a, b):
    for parts in ([a], [a, b]):
        try:
            decode_capture(parts)
        except ProtocolError:
            pass
    for decode in (Verdict.decode, Alert.decode, Status.decode):
        for parts in ([b"status", a], [b"verdict.x", a], [b"alert.x", a], [a, b]):
            try:
                decode(parts)
            except ProtocolError:
                pass


@settings(max_examples=200, deadline=None)
@given(st.integers(16, 64), st.integers(16, 64), st.integers(0, 2**40),
       st.floats(0, 2e9, allow_nan=False), st.text("abcXYZ019_.-", min_size=1, max_size=64))
def test_frame_round_trip_property(h, w, seq, t, name):
    px = np.random.default_rng(seq % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    f = Frame(stream=name, seq=seq, t_capture=t, t_mono=t / 2, pixels=px)
    g = decode_capture(f.encode())
    assert (g.stream, g.seq, g.t_capture) == (name, seq, t) and math.isclose(g.t_mono, t / 2)
    np.testing.assert_array_equal(g.pixels, px)


def test_frames_over_a_real_zeromq_socket_zero_copy(tmp_path):
    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    try:
        endpoint = f"ipc://{tmp_path}/frames"
        pull.bind(endpoint)
        push.connect(endpoint)
        sent = make_frame(h=480, w=640, seq=1)
        push.send_multipart(sent.encode(), copy=False)
        assert pull.poll(5000)
        got = decode_capture(pull.recv_multipart(copy=False))
        np.testing.assert_array_equal(got.pixels, sent.pixels)
        assert got.seq == 1
    finally:
        push.close(0)
        pull.close(0)
