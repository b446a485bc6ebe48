"""The alert rule: the per-stream state machine (no sockets) and the alert message on the wire."""
from __future__ import annotations

import msgpack
import pytest

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.wire.protocol import Alert, ProtocolError
from helpers.verdicts import feed, states, verdict


def test_opens_after_k_of_n_fake_windows():
    msgs = feed(AlertTracker("door"), "frrf")   # 1 of 3, then f r r f: only 1 fake among the last 3
    assert msgs == []
    msgs = feed(AlertTracker("door"), "frf")    # 2 of the last 3
    assert states(msgs) == ["start"] and msgs[0][0] == 102.0
    start = msgs[0][1]
    assert start.windows == 2 and start.t_start == 99.0 and start.t_end is None and start.peak_score == 0.9
    assert AlertTracker("x", AlertRules(open_after=1, open_of=1)).on_verdict(verdict("fake", 5.0)).state == "start"


def test_updates_then_ends_after_consecutive_real_windows():
    tracker = AlertTracker("door", AlertRules(update_every=2, close_after=3))
    msgs = feed(tracker, "ff" + "ff" + "rfr" + "rrr")
    assert states(msgs) == ["start", "update", "update", "update", "end"]
    ids = {m.alert_id for _, m in msgs}
    assert len(ids) == 1 and len(next(iter(ids))) == 32
    end = msgs[-1][1]
    assert end.windows == 5 and end.t_end == msgs[-1][0] and end.score == 0.1 and not tracker.active
    # windows 4-8 are r f r r r: the fake one restarts the real run, so the third real in a row (8) ends it
    assert msgs[-1][0] == 100.0 + 8


def test_no_face_windows_neither_open_nor_close():
    assert feed(AlertTracker("door"), "fnnnnf")[0][1].state == "start"
    tracker = AlertTracker("door", AlertRules(close_after=2))
    msgs = feed(tracker, "ff" + "rnnnnnr")
    assert states(msgs) == ["start", "end"]
    assert feed(AlertTracker("door"), "nnnnnnnn") == []


def test_cooldown_after_an_end_and_a_new_id_after_it():
    tracker = AlertTracker("door", AlertRules(close_after=1, cooldown_s=10))
    first = feed(tracker, "ffr", t0=0.0)               # start at 1, end at 2
    assert states(first) == ["start", "end"]
    assert feed(tracker, "ff", t0=5.0) == []            # inside the cooldown (until 12)
    again = feed(tracker, "ff", t0=20.0)
    assert states(again) == ["start"] and again[0][1].alert_id != first[0][1].alert_id


def test_end_of_stream_or_eviction_ends_the_open_alert():
    tracker = AlertTracker("door")
    feed(tracker, "ff")
    end = tracker.end(200.0)
    assert end.state == "end" and end.t_end == 200.0 and tracker.end(201.0) is None
    assert AlertTracker("door").end(1.0) is None


def test_untrained_bundles_raise_marked_alerts():
    msgs = feed(AlertTracker("door"), "ff", untrained=True)
    assert msgs[0][1].untrained


def test_alert_message_round_trip_and_validation():
    a = feed(AlertTracker("cam-1"), "ff", stream="cam-1")[0][1]
    parts = a.encode()
    assert parts[0] == b"alert.cam-1" and Alert.decode(parts) == a
    h = msgpack.unpackb(parts[1])
    for bad, reason in (({"state": "open"}, "state"), ({"t_end": 5.0}, "t_end"), ({"evidence": "x"}, "evidence"),
                        ({"score": 2.0}, "score"), ({"stream": "other"}, "does not match")):
        with pytest.raises(ProtocolError, match=reason):
            Alert.decode([parts[0], msgpack.packb({**h, **bad})])
