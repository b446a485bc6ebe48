"""What a subscriber knows of a stream's face tracks: each track's latest verdict, for as long as
the track lives.

Verdicts come per face track; a track's end is not a message of its own (its alert's `end` is,
when it had one). A track whose verdicts stopped for longer than a window and a half has ended
(a live track has a verdict every stride, well within one window); a stream-level `no_face`
verdict means no track has a face. `dfwatch watch` (a row per live track) and the MQTT bridge (a
stream is `fake` while any live track's latest window is) read tracks this way.
"""
from __future__ import annotations

from daemon.wire.protocol import Verdict

ENDED_AFTER_WINDOWS = 1.5   # a track with no verdict for this many window spans has ended


class LatestByTrack:
    def __init__(self):
        self.streams: dict[str, dict[int | None, Verdict]] = {}

    def update(self, v: Verdict) -> dict[int | None, Verdict]:
        """Records a verdict; returns its stream's live tracks' latest verdicts."""
        tracks = self.streams.setdefault(v.stream, {})
        if v.track is None and v.label == "no_face":
            tracks.clear()
        tracks[v.track] = v
        horizon = ENDED_AFTER_WINDOWS * max(v.t_last - v.t_first, 0.0)
        for track in [t for t, last in tracks.items() if last.t_last < v.t_last - horizon]:
            del tracks[track]
        return tracks

    def of(self, stream: str) -> dict[int | None, Verdict]:
        return self.streams.get(stream, {})

    def label(self, stream: str) -> str:
        """fake while any live track's latest window is fake, else real, else no_face."""
        labels = {v.label for v in self.of(stream).values()}
        return "fake" if "fake" in labels else "real" if "real" in labels else "no_face"
