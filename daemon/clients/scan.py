"""`dfwatch scan VIDEO...`: is this file fake? Whole files scored with the daemon's own code.

Frames are read and sampled exactly as a capture process reads an unpaced file
(`daemon/service/capture.py: file_frames`), and scored by the same per-stream analysis and decision rules
as the inference process (`engines/scoring.py`), so a scan and the daemon give the same
per-window scores for the same file. A file's overall verdict is the alert rule's
(`daemon/outcomes/alerts.py`, configuration section `alerts`): `fake` when an alert would have opened (by
default 2 of 3 consecutive windows with a face were fake) — or, in a file too short for that (fewer
windows with a face than `open_of`), when at least `open_after`/`open_of` of them were fake —
`no_face` when no window had enough faces, else `real`.

Every output (the terminal line, the JSON lines, the HTML and JSON reports) names the bundle and
its checksum and says when the bundle is untrained, so a verdict never travels without what made it.

Exit codes: 0 every file real; 1 at least one file fake (and every file read); 2 bad usage or a
file that could not be read, which wins over 1: the answer is incomplete (the other files are
still scanned); 3 no face found in some file (and none fake).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.outcomes.alerts import AlertRules, AlertTracker
from daemon.service.publisher import window_verdict
from engines.operating_points import calibration_bound, operating_threshold
from engines.sources import SourceError, parse_source, source_kind

EXIT_REAL, EXIT_FAKE, EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_NO_VERDICT = 0, 1, 2, 3, 4
MAX_SHEETS = 4  # the most suspect fake windows' faces shown in a report
SUSPECT_MOMENTS = 5  # the highest-scoring windows listed with their times
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}


def expand_inputs(paths: list[str]) -> list[str]:
    """Files as given; a directory becomes the video files under it (by suffix, sorted), or an
    error entry when it holds none."""
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            videos = sorted(str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            out += videos or [p]
        else:
            out.append(p)
    return out


@dataclass
class FileResult:
    path: str
    windows: list[dict] = field(default_factory=list)
    alerts: int = 0
    short_and_fake: bool = False   # a track with too few windows for the alert rule, and enough of them fake
    alerted_tracks: set[int] = field(default_factory=set)   # the face tracks that make the file fake
    sheets: dict[int, np.ndarray] = field(default_factory=dict)  # window -> contact sheet (BGR)
    error: str | None = None
    warning: str | None = None     # e.g. the file ended early (truncated): its frames were scored
    model: dict = field(default_factory=dict)   # what scored it: Scanner.provenance()
    withheld: str | None = None    # why no verdict is given (an untrained model's scores mean nothing)

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if self.withheld:
            return "no_verdict"
        if self.alerts or self.short_and_fake:
            return "fake"
        return "real" if any(w["label"] != "no_face" for w in self.windows) else "no_face"

    def by_track(self) -> dict[int, list[dict]]:
        """The windows of each face track (stream-level no_face windows have none)."""
        tracks: dict[int, list[dict]] = {}
        for w in self.windows:
            if w["track"] is not None:
                tracks.setdefault(w["track"], []).append(w)
        return tracks

    def track_summaries(self) -> list[dict]:
        """One line per face track: its verdict (fake when it alone makes the file fake), windows, scores."""
        out = []
        for track, rows in sorted(self.by_track().items()):
            scores = [w["score"] for w in rows if w["score"] is not None]
            faced = [w for w in rows if w["label"] != "no_face"]
            verdict = "fake" if track in self.alerted_tracks else ("real" if faced else "no_face")
            out.append({"track": track, "verdict": "no_verdict" if self.withheld else verdict, "windows": len(rows),
                        "fake_windows": sum(w["label"] == "fake" for w in rows),
                        "peak_score": max(scores) if scores else None,
                        "mean_score": float(np.mean(scores)) if scores else None,
                        "t_first": rows[0]["t_first"], "t_last": rows[-1]["t_last"], "box": _mean_box(rows)})
        return out

    def summary(self) -> dict:
        scores = [w["score"] for w in self.windows if w["score"] is not None]
        return {"file": self.path, "type": "file", "verdict": self.verdict, "windows": len(self.windows),
                "fake_windows": sum(w["label"] == "fake" for w in self.windows),
                "no_face_windows": sum(w["label"] == "no_face" for w in self.windows),
                "alerts": self.alerts, "peak_score": max(scores) if scores else None,
                "mean_score": float(np.mean(scores)) if scores else None,
                "fake_tracks": sorted(self.alerted_tracks), "tracks": self.track_summaries(), "error": self.error,
                "warning": self.warning, **self.model}

    def suspect_moments(self, n: int = SUSPECT_MOMENTS) -> list[dict]:
        """The n highest-scoring windows, in time order."""
        scored = sorted((w for w in self.windows if w["score"] is not None), key=lambda w: -w["score"])[:n]
        return sorted(scored, key=lambda w: w["t_first"])


def _mean_box(rows: list[dict]) -> list[float] | None:
    boxes = [w["box"] for w in rows if w.get("box")]
    return [round(float(v), 4) for v in np.mean(boxes, axis=0)] if boxes else None


def exit_code(results: list[FileResult]) -> int:
    """2 wins over 1: with a file unread, 'no fake among them' is not known."""
    verdicts = {r.verdict for r in results}
    if "error" in verdicts:
        return EXIT_BAD_INPUT
    if "no_verdict" in verdicts:
        return EXIT_NO_VERDICT
    if "fake" in verdicts:
        return EXIT_FAKE
    return EXIT_NO_FACE if "no_face" in verdicts else EXIT_REAL


class Scanner:
    """Loaded once (bundle, runners, face detector), then `scan(path)` per file."""

    def __init__(self, config, bundle, runners, detector, backend: str):
        self.config, self.bundle, self.runners, self.detector, self.backend = config, bundle, runners, detector, backend
        self.threshold, self.calibrated = operating_threshold(config, bundle)
        self.fps = config.capture.fps or bundle.fps
        self.rules = AlertRules.from_config(config.alerts)

    def provenance(self) -> dict:
        """What scored a file, for every output: the bundle, its checksum, trained or not, the operating point."""
        from engines import __version__

        return {"model": self.bundle.id, "family": self.bundle.family, "bundle_checksum": self.bundle.checksum,
                "untrained": not self.bundle.trained, "threshold": self.threshold, "calibrated": self.calibrated,
                "false_alerts_per_day": calibration_bound(self.config, self.bundle),
                "backend": self.backend, "dfwatch": __version__}

    def scan(self, path: str, keep_sheets: bool = False, progress=None) -> FileResult:
        from daemon.service.capture import file_frames, first_frame_check
        from engines.pipeline.tracking import TrackingSpec
        from engines.scoring import scheduler, stream_analysis

        result = FileResult(path, model=self.provenance())
        try:
            if Path(path).is_dir():
                raise SourceError(f"{path} is a folder with no video file in it ({', '.join(sorted(VIDEO_SUFFIXES))})")
            if source_kind(parse_source(path)) != "file":
                raise SourceError(f"{path} is not a video file: scan takes files (watch cameras with 'dfwatch run')")
            first_frame_check(path)
        except SourceError as e:
            result.error = str(e)
            return result
        c, w = self.config.capture, self.config.window
        stream = Path(path).name[:64] or "file"
        trackers: dict[int | None, AlertTracker] = {}   # the alert rule per face track
        crops: dict[tuple[int, int], np.ndarray] = {}   # (track, position) -> face crop (RGB), for contact sheets

        def keep_crop(tf) -> None:
            if keep_sheets:
                crops[(tf.track.id, tf.index)] = tf.crop

        run = scheduler(self.bundle, self.runners, self.detector, self.threshold, on_crop=keep_crop)
        analysis = stream_analysis(self.bundle, w.stride, w.min_face_fraction,
                                   tracking=TrackingSpec.from_config(self.config.faces), work=run.work, name=stream,
                                   fps=self.fps)

        def decide(decided) -> None:
            for d in decided:
                if d.window is None:  # a track ended
                    trackers.pop(d.item.track, None)
                    continue
                win, decision = d.window, d.decision
                row = {"file": path, "type": "window", "window": len(result.windows), "track": win.track,
                       "t_first": round(win.t_first, 3), "t_last": round(win.t_last, 3), "score": decision.score,
                       "label": decision.label, "faces": win.faces, "frames": win.frames,
                       "fake_frames": decision.fake_frames, "box": win.box, "decisive": decision.decisive}
                result.windows.append(row)
                if win.track is not None:
                    tracker = trackers.setdefault(win.track, AlertTracker(stream, self.rules, win.track))
                    alert = tracker.on_verdict(window_verdict(stream, row["window"], win, decision, self.threshold,
                                                              self.bundle, self.backend, latency_ms=0.0,
                                                              calibrated=self.calibrated))
                    if alert is not None and alert.state == "start":
                        result.alerts += 1
                        result.alerted_tracks.add(win.track)
                if keep_sheets and decision.label == "fake":
                    keep_telling_sheet(result, row, lambda: _sheet([crops.get((win.track, i)) for i in win.indices]))
            if keep_sheets:  # crops no later window needs
                for key in [k for k in crops if k[0] not in analysis.tracks or k[1] < analysis.tracks[k[0]].deleted]:
                    del crops[key]

        def ended(warning: str | None) -> None:
            result.warning = warning

        for seq, (pixels, pos_ms, done, total) in enumerate(file_frames(path, self.fps, c.max_width, c.max_height,
                                                                        on_end=ended)):
            t = pos_ms / 1000.0
            analysis.add_frame(pixels, seq, t, t)
            decide(run.drain())
            if progress:
                progress(done, total)
        analysis.end()
        decide(run.drain())
        for track, rows in result.by_track().items():
            faced = [row for row in rows if row["label"] != "no_face"]
            if faced and len(faced) < self.rules.open_of:
                fakes = sum(row["label"] == "fake" for row in faced)
                if fakes * self.rules.open_of >= self.rules.open_after * len(faced):
                    result.short_and_fake = True
                    result.alerted_tracks.add(track)
        return result


def keep_telling_sheet(result: FileResult, row: dict, make) -> None:
    """Keeps the contact sheets of the MAX_SHEETS highest-scoring fake windows (near-identical
    sheets of every fake window made a report page of megabytes)."""
    scores = {w["window"]: w["score"] for w in result.windows}
    if len(result.sheets) >= MAX_SHEETS:
        weakest = min(result.sheets, key=lambda w: scores[w])
        if scores[weakest] >= row["score"]:
            return
        del result.sheets[weakest]
    result.sheets[row["window"]] = make()


def _sheet(crops: list) -> np.ndarray:
    from daemon.outcomes.evidence import contact_sheet
    import cv2

    faces = [cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2BGR) for c in crops if c is not None]
    return contact_sheet(faces or [np.zeros((96, 96, 3), np.uint8)], [None] * max(1, len(faces)))


# ---- output --------------------------------------------------------------------------------

def terminal_progress(name: str, out=sys.stderr):
    """A progress bar on a terminal (None otherwise)."""
    if not out.isatty():
        return None
    state = {"shown": -1}

    def show(done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 0
        if pct != state["shown"]:
            state["shown"] = pct
            bar = "#" * (pct // 4)
            print(f"\r{name[-40:]:40} [{bar:25}] {pct:3d}%", end="", file=out, flush=True)
    return show


def model_text(r: FileResult) -> str:
    """The bundle, its checksum and, where it is so, that it is untrained: on every verdict line."""
    m = r.model
    text = f"bundle {m['model']} (sha256 {m['bundle_checksum'][:12]})"
    return text + (", UNTRAINED: this verdict means nothing" if m["untrained"] else "")


def verdict_text(r: FileResult) -> str:
    """What a person reads first: FAKE, REAL, NO_FACE, or NO VERDICT and why."""
    return f"NO VERDICT: {r.withheld}" if r.withheld else r.verdict.upper()


def human_line(r: FileResult, threshold: float) -> str:
    s = r.summary()
    if r.error:
        return f"{r.path}: ERROR {r.error}"
    peak = "-" if s["peak_score"] is None else f"{s['peak_score']:.3f}"
    line = (f"{r.path}: {verdict_text(r)} ({s['windows']} windows, {s['fake_windows']} fake, "
            f"{s['no_face_windows']} without a face; peak P(fake) {peak}, threshold {threshold:g}; {model_text(r)})")
    flagged = [w for w in r.windows if w["label"] == "fake"][:5]
    if flagged and r.verdict == "fake":
        line += "\n  fake windows at " + ", ".join(f"{w['t_first']:.1f}-{w['t_last']:.1f} s" for w in flagged)
    tracks = s["tracks"]
    if len(tracks) > 1 or r.alerted_tracks:
        for t in tracks:
            peak = "-" if t["peak_score"] is None else f"{t['peak_score']:.3f}"
            line += (f"\n  track {t['track']}: {t['verdict'].upper()}, face at the {where(t['box'])}, "
                     f"{t['t_first']:.1f}-{t['t_last']:.1f} s, {t['windows']} windows, {t['fake_windows']} fake, "
                     f"peak P(fake) {peak}")
    if r.warning:
        line += f"\n  warning: {r.warning}"
    return line


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def where(box: list[float] | None) -> str:
    """Where a face box (fractions of the frame) lies, in words: 'top left', 'middle', ..."""
    if not box:
        return "unknown place"
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    return "middle" if (row, col) == ("middle", "centre") else f"{row} {col}"


def json_lines(r: FileResult) -> list[str]:
    return [json.dumps(w) for w in r.windows] + [json.dumps(r.summary())]


def video_facts(path: str) -> dict:
    """What a fact-checker files about the file itself: checksum, size, duration, resolution, codec."""
    import cv2

    from engines.checksums import sha256_file

    cap = cv2.VideoCapture(path)
    try:
        fps, frames = cap.get(cv2.CAP_PROP_FPS) or 0.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"
        facts = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                 "fps": round(fps, 3), "frames": frames, "duration_s": round(frames / fps, 3) if fps else None,
                 "codec": codec}
    finally:
        cap.release()
    return {"file": path, "sha256": sha256_file(Path(path)), "bytes": Path(path).stat().st_size, **facts}


def report_data(r: FileResult, facts: dict, rule: str) -> dict:
    """The JSON report written beside the HTML: the file, the model, the verdict, every window."""
    return {"report": "dfwatch-scan", "scanned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "video": facts,
            "model": r.model, "rule": rule, "summary": r.summary(), "suspect_moments": r.suspect_moments(),
            "windows": r.windows}


def write_report(r: FileResult, out_dir: Path, threshold: float, rules: AlertRules) -> Path:
    """One self-contained HTML page (the score timeline as inline SVG, the most suspect moments,
    the telling windows' faces) and the same facts as JSON beside it (<file>.json)."""
    import base64
    import html

    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / (Path(r.path).name + ".html")
    rule = _rule_text(rules)
    data = report_data(r, video_facts(r.path), rule)
    page.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    s, v, m = r.summary(), data["video"], r.model
    track_of = {w["window"]: w["track"] for w in r.windows}
    sheets = "".join(
        f'<figure><img alt="faces of window {w}" src="data:image/jpeg;base64,'
        f'{base64.b64encode(cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()).decode()}">'
        f"<figcaption>window {w}, track {track_of.get(w)}</figcaption></figure>" for w, sheet in sorted(r.sheets.items()))
    tracks = "".join(f"<tr><td>{t['track']}</td><td>{t['verdict'].upper()}</td><td>{where(t['box'])}</td>"
                     f"<td>{t['t_first']:.1f}&ndash;{t['t_last']:.1f} s</td><td>{t['windows']}</td>"
                     f"<td>{t['fake_windows']}</td><td>{_score_text(t['peak_score'])}</td></tr>" for t in s["tracks"])
    warning = ("<p class=warn>This bundle is untrained (a demo): its scores mean nothing.</p>"
               if m["untrained"] else "") + (f"<p class=warn>{html.escape(r.warning)}</p>" if r.warning else "")
    moments = "".join(f"<tr><td>{w['t_first']:.1f}&ndash;{w['t_last']:.1f} s</td><td>{w['window']}</td>"
                      f"<td>{w['score']:.3f}</td><td>{w['label']}</td></tr>" for w in data["suspect_moments"])
    duration = "unknown" if v["duration_s"] is None else f"{v['duration_s']:.1f} s"
    facts = [("File", html.escape(Path(r.path).name)), ("sha256", v["sha256"]), ("Size", f"{v['bytes']:,} bytes"),
             ("Duration", duration), ("Resolution", f"{v['width']}&times;{v['height']}"),
             ("Codec", html.escape(v["codec"])), ("Frame rate", f"{v['fps']:g} fps"),
             ("Scanned", data["scanned_at"]), ("dfwatch", m["dfwatch"]),
             ("Bundle", f"{html.escape(m['model'])} ({html.escape(m['family'])}"
                        f"{', UNTRAINED' if m['untrained'] else ''})"),
             ("Bundle checksum", m["bundle_checksum"]),
             ("Operating point", f"threshold {threshold:g} on P(fake); {html.escape(rule)}")]
    rows = "".join(f"<tr><th>{k}</th><td>{val}</td></tr>" for k, val in facts)
    page.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dfwatch scan: {html.escape(Path(r.path).name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} .warn{{color:#b00;font-weight:bold}}
table{{border-collapse:collapse;margin-bottom:1em}} th,td{{text-align:left;padding:2px 10px;border-bottom:1px solid #eee}}
figure{{display:inline-block;margin:0 1em 1em 0}} svg{{border:1px solid #ccc}}</style></head>
<body><h1>{html.escape(Path(r.path).name)}: {html.escape(verdict_text(r))}</h1>{warning}
<p>{s['windows']} windows, {s['fake_windows']} fake, {s['no_face_windows']} without a face; alerts {s['alerts']}.
The same facts as JSON: {html.escape(page.with_suffix(".json").name)}.</p>
<table id="facts">{rows}</table>
<h2>Faces (tracks)</h2>
<table id="tracks"><tr><th>track</th><th>verdict</th><th>face at</th><th>time</th><th>windows</th><th>fake</th>
<th>peak P(fake)</th></tr>{tracks or '<tr><td>none</td></tr>'}</table>
<h2>P(fake) per window</h2>{timeline_svg(r.windows, threshold)}
<h2>Most suspect moments</h2>
<table id="moments"><tr><th>time</th><th>window</th><th>P(fake)</th><th>label</th></tr>{moments or
                                                                                 '<tr><td>none</td></tr>'}</table>
<h2>Faces of the most suspect fake windows</h2>{sheets or '<p>none</p>'}
</body></html>
""")
    return page


def _rule_text(rules: AlertRules) -> str:
    return (f"the file is fake when an alert would open ({rules.open_after} of {rules.open_of} consecutive windows "
            f"with a face fake: configuration section alerts), or, in a file with fewer windows than that, when at "
            f"least {rules.open_after}/{rules.open_of} of them were fake")


TRACK_COLOURS = ("#06c", "#d62", "#393", "#93c", "#c93", "#099", "#c39", "#666")


def timeline_svg(windows: list[dict], threshold: float, width: int = 800, height: int = 240) -> str:
    """Score against time, one line per face track (legend: track ids in their colours); the
    threshold dashed; no_face windows as gaps in a line."""
    pad = 30
    if not windows:
        return "<p>no window</p>"
    t0, t1 = windows[0]["t_first"], max(w["t_last"] for w in windows)
    span = max(t1 - t0, 1e-6)

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * (t - t0) / span

    def y(p: float) -> float:
        return height - pad - (height - 2 * pad) * p

    tracks = sorted({w.get("track") for w in windows if w.get("track") is not None})
    colour = {t: TRACK_COLOURS[i % len(TRACK_COLOURS)] for i, t in enumerate(tracks)}
    lines = ""
    for track in tracks:
        runs, run = [], []
        for w in (w for w in windows if w.get("track") == track):
            if w["score"] is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(f"{x(w['t_last']):.1f},{y(w['score']):.1f}")
        if run:
            runs.append(run)
        lines += "".join(f'<polyline class="score" data-track="{track}" fill="none" stroke="{colour[track]}" '
                         f'stroke-width="2" points="{" ".join(r)}"/>' for r in runs)
    dots = "".join(f'<circle cx="{x(w["t_last"]):.1f}" cy="{y(w["score"]):.1f}" r="3" '
                   f'fill="{"#c00" if w["label"] == "fake" else colour.get(w.get("track"), "#06c")}"/>'
                   for w in windows if w["score"] is not None)
    legend = "".join(f'<text x="{width - pad - 70 * (len(tracks) - i)}" y="14" font-size="11" '
                     f'fill="{colour[t]}">track {t}</text>' for i, t in enumerate(tracks)) if len(tracks) > 1 else ""
    ticks = "".join(f'<line class="tick" x1="{pad - 4}" y1="{y(p):.1f}" x2="{width - pad}" y2="{y(p):.1f}" '
                    f'stroke="#eee"/><text x="2" y="{y(p) + 4:.1f}" font-size="10">{p:.2f}</text>'
                    for p in (0.0, 0.25, 0.5, 0.75, 1.0))
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{ticks}'
            f'<line x1="{pad}" y1="{y(threshold):.1f}" x2="{width - pad}" y2="{y(threshold):.1f}" stroke="#c00" '
            f'stroke-dasharray="6 4"/><text x="{pad}" y="{y(threshold) - 4:.1f}" font-size="11">threshold '
            f'{threshold:g}</text>{lines}{dots}{legend}'
            f'<text x="{pad}" y="{height - 8}" font-size="11">{t0:.1f} s</text>'
            f'<text x="{width - pad - 40}" y="{height - 8}" font-size="11">{t1:.1f} s</text></svg>')
