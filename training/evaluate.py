"""`dfwatch train eval`: video-level metrics, plots and a JSON report for any cached split.

Scores come from the head runner of a bundle (or a head file) on the cached windows, i.e. the
same computation the daemon does for the same frames. For a frame-level family (DLDFD, the ICPR
detectors) the per-frame model runs on the cached crops and the family's `decide_frames` decides
each video's window, as the daemon does; the report adds the true classification rates (video and
frame level).
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from engines.families.base import Family  # noqa: E402
from engines.operating_points import roc_operating_points  # noqa: E402
from engines.pipeline.preprocess import Normalization, normalize  # noqa: E402
from training.features import Features  # noqa: E402
from training.frames import VideoCrops  # noqa: E402


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def compute_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float,
                    predicted: np.ndarray | None = None) -> dict:
    """Metrics of video scores; `predicted` labels default to score >= threshold (DLDFD passes
    its majority votes)."""
    predicted = (scores >= threshold).astype(int) if predicted is None else np.asarray(predicted, int)
    both = len(set(labels.tolist())) == 2
    return {
        "videos": int(len(labels)), "real": int((labels == 0).sum()), "fake": int((labels == 1).sum()),
        "threshold": threshold,
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(labels, scores)) if both else None,
        "eer": equal_error_rate(labels, scores) if both else None,
        "average_precision": float(skm.average_precision_score(labels, scores)) if both else None,
        "confusion_matrix": skm.confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "report": skm.classification_report(labels, predicted, labels=[0, 1], target_names=["real", "fake"],
                                            output_dict=True, zero_division=0),
    }


def score(head_runner, data: Features, batch: int = 32) -> np.ndarray:
    out = [head_runner.run(data.style[i:i + batch], data.content[i:i + batch]) for i in range(0, len(data), batch)]
    return np.concatenate(out).astype(np.float64)


def frame_probabilities(frame_runner, video: VideoCrops, norm: Normalization, batch: int = 32) -> np.ndarray:
    """P(fake) of each cached crop of a video, from the per-frame model."""
    return np.concatenate([frame_runner.run(normalize(video.crops[i:i + batch], norm))
                           for i in range(0, len(video.crops), batch)]).astype(np.float64)


def vote_videos(frame_runner, videos: list[VideoCrops], norm: Normalization, threshold: float,
                decide) -> dict:
    """Each video's window decided like the daemon's, by the family's rule (`decide`: DLDFD's face
    frames vote, the ICPR detectors average them; a window without any face uses its centre
    crops), plus per-frame labels for the frame-level rate."""
    scores, decisive, predicted, frame_right, frame_total = [], [], [], 0, 0
    for v in videos:
        p = frame_probabilities(frame_runner, v, norm)
        window, found = p[v.window], v.found[v.window]
        decision = decide(window[found] if found.any() else window, threshold)
        scores.append(decision.score)
        decisive.append(decision.decisive)
        predicted.append(int(decision.label == "fake"))
        faces = p[v.found]
        frame_right += int(((faces >= threshold).astype(int) == v.label).sum())
        frame_total += len(faces)
    return {"scores": np.array(scores), "decisive": np.array(decisive), "predicted": np.array(predicted),
            "frame_tcr": frame_right / frame_total if frame_total else None}


def evaluate_frames(frame_runner, videos: list[VideoCrops], norm: Normalization, threshold: float, out: Path,
                    history: list | None = None, about: dict | None = None, *, family: Family) -> dict:
    """Windows decided by the frame-level `family`'s own rule (`decide_frames`), named in the report."""
    labels = np.array([v.label for v in videos])
    voted = vote_videos(frame_runner, videos, norm, threshold, family.decide_frames)
    m = compute_metrics(labels, voted["scores"], threshold, voted["predicted"])
    m.update({"tcr": m["accuracy"], "frame_tcr": voted["frame_tcr"], "decision": family.frame_rule})
    return _report(m, out, labels, voted["scores"], [v.key for v in videos], history, about, voted["decisive"])


def plot_all(out: Path, labels: np.ndarray, scores: np.ndarray, m: dict, history: list | None) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if m["roc_auc"] is not None:
        fpr, tpr, _ = skm.roc_curve(labels, scores)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(fpr, tpr, label=f"AUC {m['roc_auc']:.3f}")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ax.legend(loc="lower right")
        files.append(_save(fig, out / "roc.png"))
    fig, ax = plt.subplots(figsize=(4, 4))
    cm = np.array(m["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="predicted", ylabel="true", title=f"confusion (threshold {m['threshold']:g})")
    files.append(_save(fig, out / "confusion.png"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, name in ((0, "real"), (1, "fake")):
        ax.hist(scores[labels == label], bins=20, range=(0, 1), alpha=0.6, label=name)
    ax.set(xlabel="P(fake)", ylabel="videos", title="scores by class")
    ax.legend()
    files.append(_save(fig, out / "scores.png"))
    if history:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
        epochs = [h["epoch"] for h in history]
        a.plot(epochs, [h["train_loss"] for h in history], label="train")
        a.plot(epochs, [h["val_loss"] for h in history], label="val")
        a.set(xlabel="epoch", ylabel="loss")
        a.legend()
        b.plot(epochs, [h["train_acc"] for h in history], label="train")
        b.plot(epochs, [h["val_acc"] for h in history], label="val")
        b.set(xlabel="epoch", ylabel="accuracy")
        files.append(_save(fig, out / "training.png"))
    return files


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def evaluate(head_runner, data: Features, threshold: float, out: Path, history: list | None = None,
             about: dict | None = None) -> dict:
    scores = score(head_runner, data)
    m = compute_metrics(data.labels, scores, threshold)
    return _report(m, out, data.labels, scores, data.keys, history, about)


def _report(m: dict, out: Path, labels: np.ndarray, scores: np.ndarray, keys: list[str], history: list | None,
            about: dict | None, decisive: np.ndarray | None = None) -> dict:
    """`decisive`: the windows' decisive scores (engines/pipeline/decision.py), when they differ
    from `scores` (DLDFD's vote): the operating points are the ROC of the decision itself."""
    m["plots"] = plot_all(out, labels, scores, m, history)
    if len(set(labels.tolist())) == 2:
        m["operating_points"] = roc_operating_points(labels, scores if decisive is None else decisive)
    m["about"] = about or {}
    m["scores"] = {k: float(s) for k, s in zip(keys, scores)}
    (out / "report.json").write_text(json.dumps(m, indent=1))
    return m
