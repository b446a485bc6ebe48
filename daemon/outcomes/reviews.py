"""Reviews of alerts: a person says whether an alert was a false alarm or a confirmed fake.

A review is stored beside the alert's evidence, `<evidence dir>/<stream>/<alert_id>/review.json`,
so it travels with the clip, the faces and alert.json; the dashboard shows it in the alert list
(`stored_alerts` reads it back), and `dfwatch calibrate --from-reviews` learns from it: false
alarms are real footage the detector got wrong, confirmed alerts are the fakes it must keep
catching. Written by the dashboard only when its token allows reviews (daemon/clients/web.py).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from daemon.wire.protocol import STREAM_NAME

REVIEWS = ("false_alarm", "confirmed")
REVIEW_FILE = "review.json"
ALERT_ID = re.compile(r"^[0-9a-f]{32}$")


class ReviewError(ValueError):
    """A review that cannot be stored; the message says why (the dashboard answers it with 400)."""


def write_review(root: Path, stream: str, alert_id: str, review: str, note: str = "") -> dict:
    """Stores a review of an alert whose evidence folder exists; replaces an earlier one."""
    if review not in REVIEWS:
        raise ReviewError(f"review must be one of {', '.join(REVIEWS)}")
    if not isinstance(stream, str) or not STREAM_NAME.match(stream) or not isinstance(alert_id, str) or \
            not ALERT_ID.match(alert_id):
        raise ReviewError("stream or alert id is not one dfwatch makes")
    folder = Path(root) / stream / alert_id
    if not (folder / "alert.json").is_file():
        raise ReviewError(f"no alert {alert_id} of stream {stream} in the evidence directory")
    data = {"alert_id": alert_id, "stream": stream, "review": review, "note": str(note)[:500], "t": time.time()}
    tmp = folder / (REVIEW_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(folder / REVIEW_FILE)
    return data


def read_review(folder: Path) -> dict | None:
    try:
        data = json.loads((Path(folder) / REVIEW_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("review") in REVIEWS else None


def reviewed_alerts(root: Path) -> list[dict]:
    """Every reviewed alert of an evidence directory: its review and its messages (alert.json)."""
    out = []
    for path in sorted(Path(root).glob(f"*/*/{REVIEW_FILE}")):
        review = read_review(path.parent)
        try:
            messages = json.loads((path.parent / "alert.json").read_text())
        except (OSError, ValueError):
            continue
        if review and isinstance(messages, list) and messages:
            out.append({**review, "messages": messages})
    return out
