"""The dfwatch wire protocol (version 1): capture -> inference frames, inference -> clients.

Every message is a ZeroMQ multipart message whose first part is (or, on PUB, follows a topic and
is) a msgpack map with `v` = PROTOCOL_VERSION. Decoders validate everything and raise exactly one
exception type, `ProtocolError`, whose `reason` is a short code the daemon counts by. Unknown
extra header fields are ignored so that v1 can grow optional fields. docs/PROTOCOL.md documents the
schema for clients in other languages.

Capture -> inference (PUSH/PULL):
  Frame        [header{kind='frame', ...}, pixels]   pixels: raw bgr24, height*width*3 bytes
  EndOfStream  [header{kind='eos', stream, seq}]      a file ended; the last window gets a verdict
  CaptureStats [header{kind='stats', stream, ...}]    the sender's own counters (drops, reconnects)
  BridgeStats  [header{kind='bridge', bridge, ...}]   a bridge process's delivery counters (drops, retries)
Inference -> clients (PUB/SUB):
  Verdict      [b'verdict.<stream>', map]
  Alert        [b'alert.<stream>', map]       an alert's start / update / end (daemon/outcomes/alerts.py)
  Status       [b'status', map]
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_SIDE = 8192                      # pixels per side
MIN_SIDE = 16                        # smaller frames cannot hold a face worth analysing
MAX_FRAME_BYTES = 4096 * 4096 * 3    # 48 MiB: refuse anything larger before allocating
MAX_PAYLOAD_BYTES = 1 << 20          # verdict / status maps
THUMBNAIL_PREFIX = "data:image/jpeg;base64,"
MAX_THUMBNAIL = 32 * 1024            # characters of a verdict's thumbnail URL
STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FORMATS = ("bgr24",)
LABELS = ("fake", "real", "no_face")
VERDICT_TOPIC = b"verdict."
ALERT_TOPIC = b"alert."
STATUS_TOPIC = b"status"
ALERT_STATES = ("start", "update", "end")

REASONS = ("bad_parts", "bad_header", "bad_version", "bad_kind", "bad_field", "bad_stream",
           "bad_format", "too_large", "too_small", "size_mismatch")


class ProtocolError(ValueError):
    """A message that fails validation; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---- field checks -------------------------------------------------------------------------

def _as_buffer(part: Any) -> memoryview:
    try:
        mv = memoryview(part)
    except TypeError:
        raise ProtocolError("bad_parts", f"message part of type {type(part).__name__} is not a buffer") from None
    return mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv


def _unpack_map(part: Any, limit: int) -> dict:
    buf = _as_buffer(part)
    if buf.nbytes > limit:
        raise ProtocolError("too_large", f"header of {buf.nbytes} bytes exceeds {limit}")
    try:
        obj = msgpack.unpackb(buf, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_header", f"not msgpack: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_header", f"header is a {type(obj).__name__}, not a map")
    version = obj.get("v")
    if not _is_int(version):
        raise ProtocolError("bad_header", "missing integer field 'v'")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {version}, this build speaks {PROTOCOL_VERSION}")
    return obj


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int(h: dict, key: str, lo: int = 0, hi: int = 2**63 - 1, optional: bool = False) -> int | None:
    x = h.get(key)
    if x is None and optional:
        return None
    if not _is_int(x) or not lo <= x <= hi:
        raise ProtocolError("bad_field", f"'{key}' must be an integer in [{lo}, {hi}], got {x!r:.40}")
    return x


def _num(h: dict, key: str, optional: bool = False, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    x = h.get(key)
    if x is None and optional:
        return None
    if not (_is_int(x) or isinstance(x, float)) or not math.isfinite(x) or not lo <= x <= hi:
        raise ProtocolError("bad_field", f"'{key}' must be a finite number in [{lo}, {hi}], got {x!r:.40}")
    return float(x)


def _str(h: dict, key: str, max_len: int = 256) -> str:
    x = h.get(key)
    if not isinstance(x, str) or len(x) > max_len:
        raise ProtocolError("bad_field", f"'{key}' must be a string of at most {max_len} characters")
    return x


def _stream(h: dict) -> str:
    x = h.get("stream")
    if not isinstance(x, str) or not STREAM_NAME.match(x):
        raise ProtocolError("bad_stream", f"stream name {x!r:.80} is not 1-64 characters of A-Z a-z 0-9 _ . -")
    return x


def _pack(d: dict) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


# ---- capture -> inference -----------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """One captured frame. `pixels` is (height, width, 3) uint8 BGR; decode gives a read-only view."""
    stream: str
    seq: int
    t_capture: float          # unix seconds when the frame was read
    t_mono: float             # time.monotonic() of the capture process at read
    pixels: np.ndarray = field(repr=False)
    pos_ms: float | None = None  # position in a file source
    format: str = "bgr24"
    gap_s: float = 0.0        # longest pause of the source since the previous frame sent (an outage, a stall)
    KIND: ClassVar[str] = "frame"

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def encode(self) -> list:
        header = {"v": PROTOCOL_VERSION, "kind": self.KIND, "stream": self.stream, "seq": self.seq,
                  "t_capture": self.t_capture, "t_mono": self.t_mono, "width": self.width,
                  "height": self.height, "format": self.format}
        if self.pos_ms is not None:
            header["pos_ms"] = self.pos_ms
        if self.gap_s:
            header["gap_s"] = self.gap_s
        return [_pack(header), np.ascontiguousarray(self.pixels, dtype=np.uint8).data]

    @classmethod
    def from_header(cls, h: dict, parts: list) -> "Frame":
        if len(parts) != 2:
            raise ProtocolError("bad_parts", f"a frame has 2 parts (header, pixels), got {len(parts)}")
        stream = _stream(h)
        fmt = h.get("format")
        if fmt not in FORMATS:
            raise ProtocolError("bad_format", f"format {fmt!r:.40} is not one of {', '.join(FORMATS)}")
        width = _int(h, "width", 1)
        height = _int(h, "height", 1)
        if width > MAX_SIDE or height > MAX_SIDE or width * height * 3 > MAX_FRAME_BYTES:
            raise ProtocolError("too_large", f"{width}x{height} exceeds the {MAX_SIDE}-pixel side / "
                                             f"{MAX_FRAME_BYTES}-byte frame limit")
        if width < MIN_SIDE or height < MIN_SIDE:
            raise ProtocolError("too_small", f"{width}x{height} is below the {MIN_SIDE}-pixel minimum side")
        pixels = _as_buffer(parts[1])
        if pixels.nbytes != width * height * 3:
            raise ProtocolError("size_mismatch", f"{pixels.nbytes} pixel bytes for {width}x{height} bgr24 "
                                                 f"(expected {width * height * 3})")
        array = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
        return cls(stream=stream, seq=_int(h, "seq"), t_capture=_num(h, "t_capture"),
                   t_mono=_num(h, "t_mono"), pixels=array, pos_ms=_num(h, "pos_ms", optional=True),
                   format=fmt, gap_s=max(0.0, _num(h, "gap_s", optional=True) or 0.0))


@dataclass(frozen=True)
class EndOfStream:
    """The source ended (a file without loop): flush the stream's last window."""
    stream: str
    seq: int  # sequence number of the last frame sent (-1 if none)
    KIND: ClassVar[str] = "eos"

    def encode(self) -> list:
        return [_pack({"v": PROTOCOL_VERSION, "kind": self.KIND, "stream": self.stream, "seq": self.seq})]

    @classmethod
    def from_header(cls, h: dict, parts: list) -> "EndOfStream":
        if len(parts) != 1:
            raise ProtocolError("bad_parts", f"an end-of-stream message has 1 part, got {len(parts)}")
        return cls(stream=_stream(h), seq=_int(h, "seq", lo=-1))


@dataclass(frozen=True)
class CaptureStats:
    """Counters only the capture process knows; cumulative, so a dropped one loses nothing."""
    stream: str
    frames_read: int = 0
    frames_sent: int = 0
    reconnects: int = 0
    stalls: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count, e.g. queue_full
    state: str = "running"  # connecting | waiting | running | backoff | blocked | ended
    detail: str = ""        # why it is not running (the last open error, password masked); absent before 0.2
    KIND: ClassVar[str] = "stats"

    def encode(self) -> list:
        d = asdict(self)
        return [_pack({"v": PROTOCOL_VERSION, "kind": self.KIND, **d})]

    @classmethod
    def from_header(cls, h: dict, parts: list) -> "CaptureStats":
        if len(parts) != 1:
            raise ProtocolError("bad_parts", f"a stats message has 1 part, got {len(parts)}")
        dropped = h.get("dropped", {})
        if not isinstance(dropped, dict) or not all(isinstance(k, str) and _is_int(v) and v >= 0
                                                    for k, v in dropped.items()) or len(dropped) > 32:
            raise ProtocolError("bad_field", "'dropped' must map reason strings to counts")
        return cls(stream=_stream(h), frames_read=_int(h, "frames_read"), frames_sent=_int(h, "frames_sent"),
                   reconnects=_int(h, "reconnects"), stalls=_int(h, "stalls"), dropped=dict(dropped),
                   state=_str(h, "state", 32), detail=_str(h, "detail", 500) if "detail" in h else "")


@dataclass(frozen=True)
class BridgeStats:
    """A bridge process's delivery counters (cumulative), pushed like a capture's so that drops
    show in the daemon's status and metrics: `bridge` names it (`0-webhook` under `dfwatch run`)."""
    bridge: str
    type: str                   # the bridge's kind: mqtt | webhook
    delivered: int = 0          # messages the receiver (broker, URL) accepted
    dropped: int = 0            # messages lost: a full queue, a refused publish, a stop with messages waiting
    rejected: int = 0           # messages the receiver refused for good (webhook: a 4xx answer)
    retries: int = 0
    queue: int = 0              # messages waiting now
    connected: bool = False     # the broker connection is up / the last delivery attempt succeeded
    dropped_events: dict[str, int] = field(default_factory=dict)  # dropped alert messages by state (optional)
    KIND: ClassVar[str] = "bridge"

    def encode(self) -> list:
        return [_pack({"v": PROTOCOL_VERSION, "kind": self.KIND, **asdict(self)})]

    @classmethod
    def from_header(cls, h: dict, parts: list) -> "BridgeStats":
        if len(parts) != 1:
            raise ProtocolError("bad_parts", f"a bridge stats message has 1 part, got {len(parts)}")
        name = h.get("bridge")
        if not isinstance(name, str) or not STREAM_NAME.match(name):
            raise ProtocolError("bad_field", f"bridge name {name!r:.80} is not 1-64 characters of A-Z a-z 0-9 _ . -")
        return cls(bridge=name, type=_str(h, "type", 32), delivered=_int(h, "delivered"), dropped=_int(h, "dropped"),
                   rejected=_int(h, "rejected"), retries=_int(h, "retries"), queue=_int(h, "queue"),
                   connected=_bool(h, "connected"), dropped_events=_counts(h, "dropped_events"))


def _counts(h: dict, key: str) -> dict[str, int]:
    """An optional map of short names to counts."""
    m = h.get(key, {})
    if not isinstance(m, dict) or len(m) > 16 or not all(isinstance(k, str) and len(k) <= 32 and _is_int(v)
                                                         for k, v in m.items()):
        raise ProtocolError("bad_field", f"'{key}' must map names to counts")
    return dict(m)


CAPTURE_KINDS = {c.KIND: c for c in (Frame, EndOfStream, CaptureStats, BridgeStats)}


def decode_capture(parts: list | tuple) -> Frame | EndOfStream | CaptureStats | BridgeStats:
    """Decodes one capture -> inference message or raises ProtocolError."""
    if not isinstance(parts, (list, tuple)) or not 1 <= len(parts) <= 2:
        n = len(parts) if isinstance(parts, (list, tuple)) else type(parts).__name__
        raise ProtocolError("bad_parts", f"expected 1 or 2 message parts, got {n}")
    h = _unpack_map(parts[0], MAX_HEADER_BYTES)
    kind = h.get("kind", "frame")
    cls = CAPTURE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("bad_kind", f"unknown message kind {kind!r:.40}")
    return cls.from_header(h, list(parts))


# ---- inference -> clients -----------------------------------------------------------------

def _topic(parts: list | tuple, expected: bytes) -> tuple[bytes, dict]:
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ProtocolError("bad_parts", "expected 2 message parts (topic, payload)")
    topic = bytes(_as_buffer(parts[0]))
    if not topic.startswith(expected):
        raise ProtocolError("bad_kind", f"topic {topic[:40]!r} does not start with {expected!r}")
    return topic, _unpack_map(parts[1], MAX_PAYLOAD_BYTES)


def _per_stream(parts: list | tuple, prefix: bytes) -> tuple[dict, str]:
    """(map, stream) of a `<prefix><stream>` message whose topic names the map's own stream."""
    topic, h = _topic(parts, prefix)
    stream = _stream(h)
    if topic != prefix + stream.encode():
        raise ProtocolError("bad_field", f"topic {topic!r:.60} does not match stream '{stream}'")
    return h, stream


def _bool(h: dict, key: str, default: bool = False) -> bool:
    x = h.get(key, default)
    if not isinstance(x, bool):
        raise ProtocolError("bad_field", f"'{key}' must be a boolean")
    return x


@dataclass(frozen=True)
class Verdict:
    """One window's decision. `score` is the fake probability (None when label is no_face); for
    the dldfd family it is the mean of the face frames' probabilities and the label is their
    majority vote, `fake_frames` of them voting fake."""
    stream: str
    window: int
    seq_first: int
    seq_last: int
    t_first: float
    t_last: float
    score: float | None
    label: str
    threshold: float
    faces: int
    frames: int
    model: str
    backend: str
    latency_ms: float
    untrained: bool = False  # the bundle's head was never trained: the score means nothing
    family: str = "stylegru"         # model family: stylegru | dldfd (optional, v1 readers ignore it)
    fake_frames: int | None = None   # dldfd: face frames whose own label is fake (optional)
    track: int | None = None         # the face track the window follows; None: a stream-level no_face (optional)
    box: list[float] | None = None   # the window's mean face box, fractions of the frame: x1, y1, x2, y2 (optional)
    thumbnail: str | None = None     # the track's face, a data: URL of a small JPEG, on its first verdict (optional)
    calibrated: bool = False         # the threshold is a site calibration's ('dfwatch calibrate'; optional)
    decisive: float | None = None    # the highest threshold at which this window is fake (optional; nil: no_face)
    false_alerts_per_day: float | None = None  # calibrated: its 95 % bound on false alerts per camera-day (optional)

    def encode(self) -> list:
        return [VERDICT_TOPIC + self.stream.encode(), _pack({"v": PROTOCOL_VERSION, **asdict(self)})]

    @classmethod
    def decode(cls, parts: list | tuple) -> "Verdict":
        h, stream = _per_stream(parts, VERDICT_TOPIC)
        label = h.get("label")
        if label not in LABELS:
            raise ProtocolError("bad_field", f"label {label!r:.40} is not one of {', '.join(LABELS)}")
        score = _num(h, "score", optional=True, lo=0.0, hi=1.0)
        if (score is None) != (label == "no_face"):
            raise ProtocolError("bad_field", "score must be null exactly when label is no_face")
        return cls(stream=stream, window=_int(h, "window"), seq_first=_int(h, "seq_first"),
                   seq_last=_int(h, "seq_last"), t_first=_num(h, "t_first"), t_last=_num(h, "t_last"),
                   score=score, label=label, threshold=_num(h, "threshold", lo=0.0, hi=1.0),
                   faces=_int(h, "faces"), frames=_int(h, "frames"), model=_str(h, "model"),
                   backend=_str(h, "backend", 64), latency_ms=_num(h, "latency_ms"), untrained=_bool(h, "untrained"),
                   family=_str(h, "family", 64) if "family" in h else "stylegru",
                   fake_frames=_int(h, "fake_frames", optional=True), track=_int(h, "track", optional=True),
                   box=_box(h), thumbnail=_thumbnail(h), calibrated=_bool(h, "calibrated"),
                   decisive=_num(h, "decisive", optional=True, lo=0.0, hi=1.0),
                   false_alerts_per_day=_num(h, "false_alerts_per_day", optional=True, lo=0.0))


def _thumbnail(h: dict) -> str | None:
    x = h.get("thumbnail")
    if x is None:
        return None
    if not isinstance(x, str) or len(x) > MAX_THUMBNAIL or not x.startswith(THUMBNAIL_PREFIX):
        raise ProtocolError("bad_field", f"'thumbnail' must be null or a {THUMBNAIL_PREFIX}... URL of at most "
                                         f"{MAX_THUMBNAIL} characters")
    return x


def _box(h: dict) -> list[float] | None:
    box = h.get("box")
    if box is None:
        return None
    if not (isinstance(box, list) and len(box) == 4 and all((_is_int(v) or isinstance(v, float)) and 0 <= v <= 1
                                                            for v in box)):
        raise ProtocolError("bad_field", "'box' must be null or 4 numbers in [0, 1] (x1, y1, x2, y2)")
    return [float(v) for v in box]


@dataclass(frozen=True)
class Alert:
    """A stream's face track that looks fake: one `alert_id` from `start` through `update`s to `end`
    (one alert per stream and track; `track` None: a sender before tracks). Times are
    capture times (Unix seconds) of the windows involved; `windows` counts the fake windows so far,
    `score` is the latest window's, `peak_score` the highest fake one; `evidence` lists files kept
    for the alert (relative to the evidence directory), null when none are."""
    alert_id: str
    stream: str
    state: str
    t_start: float
    t_last: float
    t_end: float | None
    windows: int
    score: float
    peak_score: float
    model: str
    evidence: list[str] | None = None
    untrained: bool = False
    track: int | None = None     # the face track that looks fake (optional; one alert per stream and track)
    calibrated: bool = False     # raised at a site calibration's threshold (optional)
    decisive: float | None = None  # the latest window's decisive score (optional): what a review learns from
    threshold: float | None = None  # the threshold the alert was raised under (optional; absent before 0.5)

    def encode(self) -> list:
        return [ALERT_TOPIC + self.stream.encode(), _pack({"v": PROTOCOL_VERSION, **asdict(self)})]

    @classmethod
    def decode(cls, parts: list | tuple) -> "Alert":
        h, stream = _per_stream(parts, ALERT_TOPIC)
        state = h.get("state")
        if state not in ALERT_STATES:
            raise ProtocolError("bad_field", f"state {state!r:.40} is not one of {', '.join(ALERT_STATES)}")
        t_end = _num(h, "t_end", optional=True)
        if (t_end is None) != (state != "end"):
            raise ProtocolError("bad_field", "t_end must be set exactly when state is end")
        evidence = h.get("evidence")
        if evidence is not None and not (isinstance(evidence, list) and all(isinstance(e, str) for e in evidence)):
            raise ProtocolError("bad_field", "'evidence' must be null or a list of paths")
        return cls(alert_id=_str(h, "alert_id", 64), stream=stream, state=state, t_start=_num(h, "t_start"),
                   t_last=_num(h, "t_last"), t_end=t_end, windows=_int(h, "windows"),
                   score=_num(h, "score", lo=0.0, hi=1.0), peak_score=_num(h, "peak_score", lo=0.0, hi=1.0),
                   model=_str(h, "model"), evidence=evidence, untrained=_bool(h, "untrained"),
                   track=_int(h, "track", optional=True), calibrated=_bool(h, "calibrated"),
                   decisive=_num(h, "decisive", optional=True, lo=0.0, hi=1.0),
                   threshold=_num(h, "threshold", optional=True, lo=0.0, hi=1.0))


@dataclass(frozen=True)
class StreamStatus:
    """One stream's counters in a Status message: every client reads these fields, never keys of
    a map. Missing fields take their defaults (older senders); unknown ones are ignored."""
    frames_in: int = 0           # frames received
    analysed: int = 0            # frames analysed (the sampled ones)
    windows: int = 0             # verdicts published
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> frames: the capture's and the daemon's
    reconnects: int = 0
    stalls: int = 0
    last_frame_age_s: float = 0.0
    queue_depth: int = 0         # frames waiting for analysis
    state: str = "running"       # the capture's state, or `ended` once a file's last window is out
    alert: str | None = None     # the open alert's id
    detail: str = ""             # why it is not running (the source's last error, password masked)
    verdicts: dict[str, int] = field(default_factory=dict)  # label -> verdicts published
    alerts_started: int = 0
    tracks: int = 0              # faces followed now (face tracks)
    open_alerts: list[str] = field(default_factory=list)  # ids of every open alert (one per track); `alert` the latest

    @classmethod
    def from_map(cls, h: dict) -> "StreamStatus":
        counts = {}
        for key in ("dropped", "verdicts"):
            m = h.get(key, {})
            if not isinstance(m, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in m.items()):
                raise ProtocolError("bad_field", f"'{key}' must map names to counts")
            counts[key] = dict(m)
        alert = h.get("alert")
        if alert is not None and not isinstance(alert, str):
            raise ProtocolError("bad_field", "'alert' must be an alert id or nil")
        open_alerts = h.get("open_alerts", [alert] if alert else [])
        if not isinstance(open_alerts, list) or not all(isinstance(a, str) for a in open_alerts):
            raise ProtocolError("bad_field", "'open_alerts' must be a list of alert ids")
        ints = {k: _int(h, k) for k in ("frames_in", "analysed", "windows", "reconnects", "stalls", "queue_depth",
                                        "alerts_started", "tracks") if k in h}
        return cls(**ints, **counts, alert=alert, open_alerts=open_alerts,
                   last_frame_age_s=_num(h, "last_frame_age_s") if "last_frame_age_s" in h else 0.0,
                   state=_str(h, "state", 32) if "state" in h else "running",
                   detail=_str(h, "detail", 500) if "detail" in h else "")


@dataclass(frozen=True)
class Status:
    """Process health every `status_interval` seconds. `streams` maps a stream name to its
    StreamStatus; `invalid` counts rejected messages by ProtocolError reason; `stages` maps a
    model stage (detect, style, frame, content, decision) to its totals since start: calls, items,
    seconds (optional: older senders omit it); `bridges` maps a bridge to its BridgeStats counters
    and `evidence` holds the evidence store's counters (written, dropped, failed, bytes), both
    optional."""
    t: float
    uptime_s: float
    model: str
    backend: str
    streams: dict[str, StreamStatus] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)
    bridges: dict[str, dict] = field(default_factory=dict)
    evidence: dict[str, int] = field(default_factory=dict)
    family: str = ""            # the bundle's model family (absent before 0.4)
    loop_age_s: float = 0.0     # seconds since the inference loop last finished a turn (absent before 0.5)
    stopping: bool = False      # the daemon's last status: it is stopping (absent before 0.5)

    def __post_init__(self):
        # a map given for a stream (a decoded message, a test) becomes its typed, validated status
        object.__setattr__(self, "streams", {n: s if isinstance(s, StreamStatus) else StreamStatus.from_map(s)
                                             for n, s in self.streams.items()})

    def encode(self) -> list:
        return [STATUS_TOPIC, _pack({"v": PROTOCOL_VERSION, **asdict(self)})]

    @classmethod
    def decode(cls, parts: list | tuple) -> "Status":
        topic, h = _topic(parts, STATUS_TOPIC)
        if topic != STATUS_TOPIC:
            raise ProtocolError("bad_kind", f"topic {topic!r:.40} is not {STATUS_TOPIC!r}")
        streams, invalid = h.get("streams", {}), h.get("invalid", {})
        if not isinstance(streams, dict) or not all(isinstance(k, str) and isinstance(v, dict)
                                                    for k, v in streams.items()):
            raise ProtocolError("bad_field", "'streams' must map stream names to maps")
        if not isinstance(invalid, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in invalid.items()):
            raise ProtocolError("bad_field", "'invalid' must map reasons to counts")
        stages = h.get("stages", {})
        if not isinstance(stages, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in stages.items()):
            raise ProtocolError("bad_field", "'stages' must map stage names to maps")
        bridges, evidence = h.get("bridges", {}), h.get("evidence", {})
        if not isinstance(bridges, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in bridges.items()):
            raise ProtocolError("bad_field", "'bridges' must map bridge names to maps")
        if not isinstance(evidence, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in evidence.items()):
            raise ProtocolError("bad_field", "'evidence' must map counter names to counts")
        return cls(t=_num(h, "t"), uptime_s=_num(h, "uptime_s", lo=0.0), model=_str(h, "model"),
                   backend=_str(h, "backend", 64),
                   streams=streams, invalid=invalid, stages=stages, bridges=bridges,
                   evidence=evidence, family=_str(h, "family", 64) if "family" in h else "",
                   loop_age_s=_num(h, "loop_age_s", lo=0.0) if "loop_age_s" in h else 0.0,
                   stopping=_bool(h, "stopping"))
