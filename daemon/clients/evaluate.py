"""`dfwatch eval`: what a bundle is worth on labelled footage.

Every file is scored by `dfwatch scan`'s Scanner (the daemon's own reading, sampling, tracks and
windows), so a figure measured here is the figure the daemon would give. Per file: its **score**,
the highest mean window score of any of its face tracks (a file is as fake as its most suspect
face), and its **verdict** at the bundle's operating threshold, by the alert rule (what `scan`
says). Over the files: ROC AUC with a 95 % bootstrap interval, accuracy, TPR and FPR at the
threshold, the TPR at FPR 1 % and 10 %, and the AUC per manipulation (real files against the fakes
of one manipulation). scikit-learn computes the ROC and AUC; the bootstrap resamples files.

A figure that the files cannot support is said in one line rather than computed: an AUC needs
real and fake files; an FPR of 1 % needs 100 real files to be measured at all (with N real files
the smallest FPR above zero is 1/N).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.clients.scan import VIDEO_SUFFIXES, FileResult

BOOTSTRAP = 2000
TARGET_FPRS = (0.01, 0.10)
CONFIDENCE = 0.95


@dataclass
class Labelled:
    path: str
    fake: bool
    manipulation: str          # "real" for real files; for fakes, what made them (a folder's name)


def labelled_inputs(real: list[str], fake: list[str]) -> list[Labelled]:
    """Files and folders as given: a folder's video files, each fake one named after the folder
    below the given one that holds it (`--fake manipulated/` with Deepfakes/, Face2Face/, ...),
    or after the given folder itself; `NAME=PATH` names the manipulation outright."""
    out = []
    for paths, is_fake in ((real, False), (fake, True)):
        for given in paths:
            name, _, path = given.rpartition("=") if "=" in given and not Path(given).exists() else ("", "", given)
            root = Path(path)
            files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES) \
                if root.is_dir() else [root]
            for f in files or [root]:
                if not is_fake:
                    kind = "real"
                elif name:
                    kind = name
                elif root.is_dir() and f.parent != root:
                    kind = f.relative_to(root).parts[0]
                else:
                    kind = (root if root.is_dir() else f.parent).name or "fake"
                out.append(Labelled(str(f), is_fake, kind))
    return out


def file_score(result: FileResult) -> float | None:
    """The highest mean window score of any face track (None: no window had a face)."""
    means = [t["mean_score"] for t in result.track_summaries() if t["mean_score"] is not None]
    if means:
        return float(max(means))
    scores = [w["score"] for w in result.windows if w["score"] is not None]
    return float(np.mean(scores)) if scores else None


@dataclass
class Evaluation:
    rows: list[dict] = field(default_factory=list)      # one per file
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)       # what the files could not support, one line each
    roc: dict = field(default_factory=dict)              # fpr, tpr, thresholds over the scored files


def evaluate(items: list[Labelled], results: list[FileResult], threshold: float, seed: int = 0) -> Evaluation:
    ev = Evaluation()
    for item, r in zip(items, results):
        ev.rows.append({"file": item.path, "label": "fake" if item.fake else "real", "manipulation": item.manipulation,
                        "score": None if r.error else file_score(r), "verdict": r.verdict, "windows": len(r.windows),
                        "error": r.error})
    scored = [row for row in ev.rows if row["score"] is not None]
    for row in ev.rows:
        if row["error"]:
            ev.notes.append(f"{row['file']}: not scored ({row['error']})")
        elif row["score"] is None:
            ev.notes.append(f"{row['file']}: not scored (no window had a face)")
    labels = np.array([row["label"] == "fake" for row in scored], int)
    scores = np.array([row["score"] for row in scored], float)
    real, fake = int((labels == 0).sum()), int((labels == 1).sum())
    verdicts = [row for row in scored if row["verdict"] in ("fake", "real")]
    ev.figures = {"files": len(ev.rows), "scored": len(scored), "real": real, "fake": fake, "threshold": threshold,
                  **at_threshold(verdicts)}
    if not real or not fake:
        ev.notes.append(f"no AUC: it needs real and fake files (scored {real} real, {fake} fake)")
        return ev
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    ev.roc = {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist(),
              "thresholds": np.minimum(thresholds, 1.0).round(6).tolist()}
    ev.figures["auc"] = round(float(roc_auc_score(labels, scores)), 4)
    ev.figures["auc_95"] = bootstrap_auc(labels, scores, seed)
    if ev.figures["auc_95"] is None:
        ev.notes.append("no AUC interval: too few files of a class to resample")
    for target in TARGET_FPRS:
        key = f"tpr_at_fpr_{target:g}"
        ev.figures[key] = round(float(tpr[fpr <= target].max()), 4)
        if target * real < 1:
            ev.notes.append(f"TPR at FPR {target:.0%}: with {real} real files no false positive fits under "
                            f"{target:.0%}, so it is the TPR at zero false positives")
    ev.figures["auc_by_manipulation"] = {}
    for kind in sorted({row["manipulation"] for row in scored if row["label"] == "fake"}):
        keep = [(row["label"] == "fake", row["score"]) for row in scored
                if row["label"] == "real" or row["manipulation"] == kind]
        y, s = np.array([k for k, _ in keep], int), np.array([v for _, v in keep], float)
        ev.figures["auc_by_manipulation"][kind] = {"auc": round(float(roc_auc_score(y, s)), 4),
                                                   "fake_files": int(y.sum())}
    return ev


def at_threshold(rows: list[dict]) -> dict:
    """Accuracy, TPR and FPR of the files' verdicts (the alert rule at the bundle's threshold)."""
    fake = [r for r in rows if r["label"] == "fake"]
    real = [r for r in rows if r["label"] == "real"]
    right = sum((r["verdict"] == "fake") == (r["label"] == "fake") for r in rows)
    return {"accuracy": round(right / len(rows), 4) if rows else None,
            "tpr": round(sum(r["verdict"] == "fake" for r in fake) / len(fake), 4) if fake else None,
            "fpr": round(sum(r["verdict"] == "fake" for r in real) / len(real), 4) if real else None}


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, seed: int = 0, rounds: int = BOOTSTRAP) -> list[float] | None:
    """The percentile interval of the AUC over resampled files (each class resampled within
    itself, so every resample has both), or None with fewer than two files of a class."""
    from sklearn.metrics import roc_auc_score

    real, fake = np.nonzero(labels == 0)[0], np.nonzero(labels == 1)[0]
    if len(real) < 2 or len(fake) < 2:
        return None
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(rounds):
        pick = np.concatenate([rng.choice(real, len(real)), rng.choice(fake, len(fake))])
        aucs.append(roc_auc_score(labels[pick], scores[pick]))
    low, high = np.quantile(aucs, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return [round(float(low), 4), round(float(high), 4)]


# ---- what a person reads --------------------------------------------------------------------------

def table(ev: Evaluation) -> str:
    """Markdown: one row per file, then the figures."""
    lines = ["| file | label | manipulation | score | verdict |", "|---|---|---|---|---|"]
    for r in ev.rows:
        score = "-" if r["score"] is None else f"{r['score']:.3f}"
        lines.append(f"| {Path(r['file']).name} | {r['label']} | {r['manipulation']} | {score} | {r['verdict']} |")
    return "\n".join(lines) + "\n\n" + "\n".join(summary_lines(ev)) + "\n"


def summary_lines(ev: Evaluation) -> list[str]:
    f = ev.figures
    lines = [f"{f['scored']} of {f['files']} files scored: {f['real']} real, {f['fake']} fake"]
    if "auc" in f:
        interval = f" (95 % bootstrap {f['auc_95'][0]:.2f}-{f['auc_95'][1]:.2f})" if f.get("auc_95") else ""
        lines.append(f"AUC {f['auc']:.3f}{interval}; TPR at FPR 1 % {f['tpr_at_fpr_0.01']:.2f}, "
                     f"at FPR 10 % {f['tpr_at_fpr_0.1']:.2f}")
        for kind, m in f["auc_by_manipulation"].items():
            lines.append(f"  {kind}: AUC {m['auc']:.3f} ({m['fake_files']} fake file(s))")
    if f.get("accuracy") is not None:
        parts = [f"accuracy {f['accuracy']:.2f}"] + [f"{k.upper()} {f[k]:.2f}" for k in ("tpr", "fpr")
                                                     if f.get(k) is not None]
        lines.append(f"at the threshold {f['threshold']:g} (the alert rule, as scan decides): " + ", ".join(parts))
    return lines + [f"note: {n}" for n in ev.notes]


def write_outputs(ev: Evaluation, out: Path, provenance: dict) -> list[Path]:
    """report.json (machines), report.md (the table) and roc.png (the curve) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"model": provenance, "figures": ev.figures, "files": ev.rows, "notes": ev.notes, "roc": ev.roc}
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "report.md").write_text(f"# dfwatch eval: {provenance['model']}\n\n" + table(ev))
    written = [out / "report.json", out / "report.md"]
    if ev.roc:
        roc_png(out / "roc.png", ev.roc, ev.figures, provenance["model"])
        written.append(out / "roc.png")
    return written


def roc_png(path: Path, roc: dict, figures: dict, model: str, size: int = 480) -> None:
    """The ROC as a PNG (OpenCV: no plotting library needed at run time)."""
    import cv2

    margin, img = 60, np.full((size + 90, size + 80, 3), 255, np.uint8)

    def at(fpr: float, tpr: float) -> tuple[int, int]:
        return int(margin + fpr * size), int(20 + (1 - tpr) * size)

    cv2.rectangle(img, at(0, 1), at(1, 0), (0, 0, 0), 1)
    cv2.line(img, at(0, 0), at(1, 1), (180, 180, 180), 1, cv2.LINE_AA)
    for v in (0.25, 0.5, 0.75):
        cv2.line(img, at(v, 0), at(v, 0.01), (0, 0, 0), 1)
        cv2.line(img, at(0, v), at(0.01, v), (0, 0, 0), 1)
        cv2.putText(img, f"{v:g}", (at(v, 0)[0] - 12, at(v, 0)[1] + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{v:g}", (at(0, v)[0] - 34, at(0, v)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    points = np.array([at(f, t) for f, t in zip(roc["fpr"], roc["tpr"])], np.int32)
    cv2.polylines(img, [points], False, (200, 90, 0), 2, cv2.LINE_AA)
    interval = f" [{figures['auc_95'][0]:.2f}, {figures['auc_95'][1]:.2f}]" if figures.get("auc_95") else ""
    cv2.putText(img, f"AUC {figures['auc']:.3f}{interval}  ({figures['real']} real, {figures['fake']} fake)",
                (margin, size + 50), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"false-positive rate ->   {model[:40]}", (margin, size + 75), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, "TPR", (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)
