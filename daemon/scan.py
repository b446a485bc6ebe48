"""`dfwatch scan VIDEO...`: is this file fake? Whole files scored with the daemon's own code.

Frames are read and sampled exactly as a capture process reads an unpaced file
(`daemon/capture.py: file_frames`), and scored by the same per-stream analysis and decision rules
as the inference process (`engines/pipeline/driver.py`), so a scan and the daemon give the same
per-window scores for the same file. A file's overall verdict is the alert rule's
(`daemon/alerts.py`, configuration section `alerts`): `fake` when an alert would have opened (by
default 2 of 3 consecutive windows with a face were fake) — or, in a file too short for that (fewer
windows with a face than `open_of`), when at least `open_after`/`open_of` of them were fake —
`no_face` when no window had enough faces, else `real`.

Exit codes: 0 every file real; 1 at least one file fake; 2 bad usage or a file that could not be
read (the other files are still scanned); 3 no face found in some file (and none fake).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.alerts import AlertRules, AlertTracker
from daemon.inference import window_verdict
from engines.sources import SourceError, parse_source, source_kind

EXIT_REAL, EXIT_FAKE, EXIT_BAD_INPUT, EXIT_NO_FACE = 0, 1, 2, 3
MAX_SHEETS = 12  # flagged windows shown in a report


@dataclass
class FileResult:
    path: str
    windows: list[dict] = field(default_factory=list)
    alerts: int = 0
    short_and_fake: bool = False   # too few windows for the alert rule, and enough of them fake
    sheets: dict[int, np.ndarray] = field(default_factory=dict)  # window -> contact sheet (BGR)
    error: str | None = None

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if self.alerts or self.short_and_fake:
            return "fake"
        return "real" if any(w["label"] != "no_face" for w in self.windows) else "no_face"

    def summary(self) -> dict:
        scores = [w["score"] for w in self.windows if w["score"] is not None]
        return {"file": self.path, "type": "file", "verdict": self.verdict, "windows": len(self.windows),
                "fake_windows": sum(w["label"] == "fake" for w in self.windows),
                "no_face_windows": sum(w["label"] == "no_face" for w in self.windows),
                "alerts": self.alerts, "peak_score": max(scores) if scores else None,
                "mean_score": float(np.mean(scores)) if scores else None, "error": self.error}


def exit_code(results: list[FileResult]) -> int:
    verdicts = {r.verdict for r in results}
    if "fake" in verdicts:
        return EXIT_FAKE
    if "error" in verdicts:
        return EXIT_BAD_INPUT
    return EXIT_NO_FACE if "no_face" in verdicts else EXIT_REAL


class Scanner:
    """Loaded once (bundle, runners, face detector), then `scan(path)` per file."""

    def __init__(self, config, bundle, runners, detector, backend: str):
        self.config, self.bundle, self.runners, self.detector, self.backend = config, bundle, runners, detector, backend
        self.threshold = config.inference.threshold if config.inference.threshold is not None else bundle.threshold
        self.fps = config.capture.fps or bundle.fps
        self.rules = AlertRules.from_config(config.alerts)

    def scan(self, path: str, keep_sheets: bool = False, progress=None) -> FileResult:
        from daemon.capture import file_frames, first_frame_check
        from engines.pipeline.driver import run_pending, stream_analysis

        result = FileResult(path)
        try:
            if source_kind(parse_source(path)) != "file":
                raise SourceError(f"{path} is not a video file: scan takes files (watch cameras with 'dfwatch run')")
            first_frame_check(path)
        except SourceError as e:
            result.error = str(e)
            return result
        c, w = self.config.capture, self.config.window
        analysis = stream_analysis(self.bundle, w.stride, w.min_face_fraction)
        tracker = AlertTracker(Path(path).name[:64] or "file", self.rules)
        crops: dict[int, np.ndarray] = {}  # analysed-frame index -> face crop (RGB), for contact sheets

        def keep_crop(record) -> None:
            if keep_sheets:
                crops[record.index] = record.crop

        def decide(windows) -> None:
            for win, decision in zip(windows, self.bundle.spec.decide(windows, self.runners, self.threshold)):
                row = {"file": path, "type": "window", "window": win.window, "t_first": round(win.t_first, 3),
                       "t_last": round(win.t_last, 3), "score": decision.score, "label": decision.label,
                       "faces": win.faces, "frames": win.frames, "fake_frames": decision.fake_frames}
                result.windows.append(row)
                alert = tracker.on_verdict(window_verdict(tracker.stream, win.window, win, decision, self.threshold,
                                                          self.bundle, self.backend, latency_ms=0.0))
                result.alerts += alert is not None and alert.state == "start"
                if keep_sheets and decision.label == "fake" and len(result.sheets) < MAX_SHEETS:
                    result.sheets[win.window] = _sheet([crops.get(i) for i in win.indices])
            if keep_sheets:  # crops no later window needs
                for i in [i for i in crops if i not in analysis.records]:
                    del crops[i]

        for seq, (pixels, pos_ms, done, total) in enumerate(file_frames(path, self.fps, c.max_width, c.max_height)):
            t = pos_ms / 1000.0
            analysis.add_frame(pixels, seq, t, t)
            decide(run_pending(analysis, self.runners, self.detector, self.bundle.spec, on_crop=keep_crop))
            if progress:
                progress(done, total)
        analysis.end()
        decide(run_pending(analysis, self.runners, self.detector, self.bundle.spec, on_crop=keep_crop))
        faced = [row for row in result.windows if row["label"] != "no_face"]
        if faced and len(faced) < self.rules.open_of:
            fakes = sum(row["label"] == "fake" for row in faced)
            result.short_and_fake = fakes * self.rules.open_of >= self.rules.open_after * len(faced)
        return result


def _sheet(crops: list) -> np.ndarray:
    from daemon.evidence import contact_sheet
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


def human_line(r: FileResult, threshold: float) -> str:
    s = r.summary()
    if r.error:
        return f"{r.path}: ERROR {r.error}"
    peak = "-" if s["peak_score"] is None else f"{s['peak_score']:.3f}"
    line = (f"{r.path}: {r.verdict.upper()} ({s['windows']} windows, {s['fake_windows']} fake, "
            f"{s['no_face_windows']} without a face; peak P(fake) {peak}, threshold {threshold:g})")
    flagged = [w for w in r.windows if w["label"] == "fake"][:5]
    if flagged and r.verdict == "fake":
        line += "\n  fake windows at " + ", ".join(f"{w['t_first']:.1f}-{w['t_last']:.1f} s" for w in flagged)
    return line


def json_lines(r: FileResult) -> list[str]:
    return [json.dumps(w) for w in r.windows] + [json.dumps(r.summary())]


def write_report(r: FileResult, out_dir: Path, threshold: float, model: str, untrained: bool) -> Path:
    """One self-contained HTML page: the score timeline (inline SVG) and the fake windows' faces."""
    import base64
    import html

    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / (Path(r.path).name + ".html")
    s = r.summary()
    sheets = "".join(
        f'<figure><img alt="faces of window {w}" src="data:image/jpeg;base64,'
        f'{base64.b64encode(cv2.imencode(".jpg", sheet)[1].tobytes()).decode()}">'
        f"<figcaption>window {w}</figcaption></figure>" for w, sheet in sorted(r.sheets.items()))
    warning = "<p class=warn>This bundle is untrained (a demo): its scores mean nothing.</p>" if untrained else ""
    page.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dfwatch scan: {html.escape(Path(r.path).name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} .warn{{color:#b00;font-weight:bold}}
figure{{display:inline-block;margin:0 1em 1em 0}} svg{{border:1px solid #ccc}}</style></head>
<body><h1>{html.escape(Path(r.path).name)}: {r.verdict.upper()}</h1>{warning}
<p>{s['windows']} windows, {s['fake_windows']} fake, {s['no_face_windows']} without a face; alerts {s['alerts']};
model {html.escape(model)}, threshold {threshold:g}. Rule: fake when {html.escape(_rule_text())}.</p>
<h2>P(fake) per window</h2>{timeline_svg(r.windows, threshold)}
<h2>Fake windows' faces</h2>{sheets or '<p>none</p>'}
</body></html>
""")
    return page


def _rule_text() -> str:
    return ("an alert would open (enough of the recent windows with a face were fake: configuration section "
            "alerts), or, in a file with too few windows for that rule, when enough of them were fake")


def timeline_svg(windows: list[dict], threshold: float, width: int = 800, height: int = 240) -> str:
    """Score against time; the threshold dashed; no_face windows as gaps in the line."""
    pad = 30
    if not windows:
        return "<p>no window</p>"
    t0, t1 = windows[0]["t_first"], max(w["t_last"] for w in windows)
    span = max(t1 - t0, 1e-6)

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * (t - t0) / span

    def y(p: float) -> float:
        return height - pad - (height - 2 * pad) * p

    runs, run = [], []
    for w in windows:
        if w["score"] is None:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(f"{x(w['t_last']):.1f},{y(w['score']):.1f}")
    if run:
        runs.append(run)
    lines = "".join(f'<polyline class="score" fill="none" stroke="#06c" stroke-width="2" points="{" ".join(r)}"/>'
                    for r in runs)
    dots = "".join(f'<circle cx="{x(w["t_last"]):.1f}" cy="{y(w["score"]):.1f}" r="3" '
                   f'fill="{"#c00" if w["label"] == "fake" else "#06c"}"/>' for w in windows if w["score"] is not None)
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<line x1="{pad}" y1="{y(threshold):.1f}" x2="{width - pad}" y2="{y(threshold):.1f}" stroke="#c00" '
            f'stroke-dasharray="6 4"/><text x="{pad}" y="{y(threshold) - 4:.1f}" font-size="11">threshold '
            f'{threshold:g}</text>{lines}{dots}'
            f'<text x="{pad}" y="{height - 8}" font-size="11">{t0:.1f} s</text>'
            f'<text x="{width - pad - 40}" y="{height - 8}" font-size="11">{t1:.1f} s</text></svg>')
