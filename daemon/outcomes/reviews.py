"""Reviews of alerts: a person says whether an alert was a false alarm or a confirmed fake.

A review is stored beside the alert's evidence, `<evidence dir>/<stream>/<alert_id>/review.json`,
so it travels with the clip, the faces and alert.json; the dashboard shows it in the alert list
(`stored_alerts` reads it back), and `dfwatch calibrate --from-reviews` learns from it: false
alarms are real footage the detector got wrong, confirmed alerts are the fakes it must keep
catching. Written by the dashboard only when its token allows reviews (daemon/clients/web.py).
A review names its reviewer (the name beside the token that made it), and a second review of
the same alert is added to the file's `history`, never written over the first: `review` is the
latest word, `history` every word, oldest first.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from daemon.outcomes.store import ALERT_ID, alert_folder, alert_folders, write_private
from daemon.wire.protocol import STREAM_NAME

REVIEWS = ("false_alarm", "confirmed")
REVIEW_FILE = "review.json"


class ReviewError(ValueError):
    """A review that cannot be stored; the message says why (the dashboard answers it with 400)."""


def write_review(root: Path, stream: str, alert_id: str, review: str, note: str = "",
                 reviewer: str = "operator") -> dict:
    """Stores a review of an alert whose evidence folder dfwatch made (store.alert_folder: never
    through a link, never outside the directory); an earlier review stays in its history."""
    if review not in REVIEWS:
        raise ReviewError(f"review must be one of {', '.join(REVIEWS)}")
    if not isinstance(stream, str) or not STREAM_NAME.match(stream) or not isinstance(alert_id, str) or \
            not ALERT_ID.match(alert_id):
        raise ReviewError("stream or alert id is not one dfwatch makes")
    folder = alert_folder(Path(root), stream, alert_id)
    if folder is None or not (folder / "alert.json").is_file():
        raise ReviewError(f"no alert {alert_id} of stream {stream} in the evidence directory")
    entry = {"review": review, "note": str(note)[:500], "t": time.time(), "reviewer": str(reviewer)[:64]}
    earlier = read_review(folder)
    history = (earlier.get("history") or [_entry(earlier)]) if earlier else []
    data = {"alert_id": alert_id, "stream": stream, **entry, "history": history + [entry]}
    tmp = folder / (REVIEW_FILE + ".tmp")
    write_private(tmp, json.dumps(data, indent=1))
    tmp.replace(folder / REVIEW_FILE)
    return data


def _entry(review: dict) -> dict:
    """One word of a review file written before histories (dfwatch 0.4): its own only entry."""
    return {"review": review["review"], "note": review.get("note", ""), "t": review.get("t"),
            "reviewer": review.get("reviewer", "unknown")}


def read_review(folder: Path) -> dict | None:
    try:
        data = json.loads((Path(folder) / REVIEW_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("review") in REVIEWS else None


def reviewed_alerts(root: Path) -> list[dict]:
    """Every reviewed alert of an evidence directory: its review and its messages (alert.json)."""
    out = []
    for folder in sorted(alert_folders(Path(root))):
        review = read_review(folder)
        if review is None:
            continue
        try:
            messages = json.loads((folder / "alert.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(messages, list) and messages:
            out.append({**review, "messages": messages})
    return out
