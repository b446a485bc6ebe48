"""Operating points: what a threshold costs in false alarms, with honest confidence bounds.

Shared by training (a bundle's operating points from its validation split's window-level ROC)
and calibration (a site's threshold from its own real footage and a false-alert budget). The
statistics are scipy's and scikit-learn's, not hand-rolled:

- a false-positive rate measured as k of n real windows has the one-sided Clopper-Pearson upper
  bound `beta.ppf(confidence, k + 1, n - k)` (the exact binomial bound; with k = 0 it is
  1 - (1 - confidence)^(1/n), about 3/n at 95 %);
- k false alerts in H hours of footage have the one-sided exact Poisson (Garwood) upper bound
  `chi2.ppf(confidence, 2k + 2) / 2` events per H hours (3.0 for k = 0 at 95 %).

A window is fake at threshold t exactly when its *decisive score* is >= t (the window's score for
StyleGRU and the ICPR detectors; for DLDFD's majority vote, the face frames' P(fake) at the vote's
middle rank: `engines/pipeline/decision.py`), so every threshold question is one about that score.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engines.errors import DfwatchError

CALIBRATION_FORMAT = "dfwatch-calibration"
CONFIDENCE = 0.95
TARGET_FPRS = (1e-1, 1e-2, 1e-3, 1e-4)
ROC_POINTS = 200      # the validation ROC kept in a manifest, downsampled


def fpr_upper(false_positives: int, negatives: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of a rate measured as k of n."""
    from scipy.stats import beta

    if negatives <= 0 or false_positives >= negatives:
        return 1.0
    return float(beta.ppf(confidence, false_positives + 1, negatives - false_positives))


def events_upper(events: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact Poisson (Garwood) upper bound of a count's mean, from `events` seen."""
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 2 * events + 2) / 2)


@dataclass(frozen=True)
class OperatingPoint:
    target_fpr: float
    threshold: float | None     # None: no threshold keeps the measured FPR at the target
    tpr: float | None
    fpr: float | None           # measured on the split's real windows
    fpr_upper: float | None     # its Clopper-Pearson upper bound
    supported: bool             # the split has enough real windows for the bound to reach the target

    def as_dict(self) -> dict:
        return asdict(self)


def roc_operating_points(labels: np.ndarray, scores: np.ndarray, targets=TARGET_FPRS,
                         confidence: float = CONFIDENCE) -> dict:
    """For each target false-positive rate, the lowest threshold whose measured FPR on these windows
    stays at or under it, the TPR there and the FPR's upper bound; `supported` says whether even
    zero false positives among these real windows would bound the FPR under the target (a split of
    n real windows supports targets down to about 3/n). Plus the ROC itself, downsampled."""
    from sklearn.metrics import roc_curve

    labels, scores = np.asarray(labels, int), np.asarray(scores, np.float64)
    negatives, positives = int((labels == 0).sum()), int((labels == 1).sum())
    if not negatives or not positives:
        raise ValueError(f"operating points need real and fake windows (got {negatives} real, {positives} fake)")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn's first threshold is +inf (nothing fake)
    points = []
    for target in targets:
        ok = np.nonzero(fpr <= target)[0]
        i = ok[-1]  # the lowest threshold still within the target (fpr grows as the threshold falls)
        k = int(round(fpr[i] * negatives))
        found = thresholds[i] < 1.0 or tpr[i] > 0
        points.append(OperatingPoint(
            target_fpr=target, threshold=float(thresholds[i]) if found else None,  # exact: a window sits on it
            tpr=round(float(tpr[i]), 6) if found else None, fpr=round(float(fpr[i]), 8) if found else None,
            fpr_upper=round(fpr_upper(k, negatives, confidence), 8) if found else None,
            supported=fpr_upper(0, negatives, confidence) <= target))
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(ROC_POINTS, len(thresholds))).round().astype(int))
    return {"confidence": confidence, "negatives": negatives, "positives": positives,
            "points": [p.as_dict() for p in points],
            "roc": {"threshold": [float(t) for t in thresholds[keep]],
                    "tpr": [round(float(t), 6) for t in tpr[keep]], "fpr": [round(float(f), 8) for f in fpr[keep]]}}


def tpr_at(roc: dict, threshold: float) -> float | None:
    """The validation TPR a threshold keeps, read off a stored ROC (the nearest stored threshold
    at or above it: never an optimistic figure)."""
    t = np.asarray(roc.get("threshold", []), np.float64)
    if not len(t):
        return None
    at_or_above = np.nonzero(t >= threshold)[0]
    return float(roc["tpr"][at_or_above[-1]]) if len(at_or_above) else 0.0


# ---- a site's calibration (dfwatch calibrate) ------------------------------------------------------

class CalibrationError(DfwatchError):
    """A calibration file that cannot be used: unreadable, or made for another bundle."""
    exit_code = 2


def write_calibration(path: Path, calibration: dict) -> None:
    data = {"format": CALIBRATION_FORMAT, "version": 1,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **calibration}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def read_calibration(path: str | Path, bundle) -> dict:
    """The calibration in `path`, checked to be this bundle's (by the bundle's checksum; only its
    format when `bundle` is None)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CalibrationError(f"inference.calibration {path}: cannot read it ({type(e).__name__}); "
                               "run 'dfwatch calibrate' to make one") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or \
            not isinstance(data.get("threshold"), (int, float)):
        raise CalibrationError(f"inference.calibration {path}: not a dfwatch calibration file")
    if bundle is not None and data.get("bundle_checksum") != bundle.checksum:
        raise CalibrationError(f"inference.calibration {path}: made for bundle {data.get('bundle')} "
                               f"(sha256 {str(data.get('bundle_checksum'))[:12]}), not {bundle.id} "
                               f"(sha256 {bundle.checksum[:12]}): calibrate this bundle ('dfwatch calibrate')")
    return data


def calibration_bound(config, bundle) -> float | None:
    """What the site calibration in force vouches for: its 95 % upper bound on false alerts per
    camera-day at its threshold (a calibration from minutes of footage vouches for thousands), or
    None when no calibration decides (`inference.threshold` set, or none configured)."""
    if config.inference.threshold is not None or not config.inference.calibration:
        return None
    bound = read_calibration(config.inference.calibration, bundle).get("false_alerts_per_day_upper")
    return float(bound) if isinstance(bound, (int, float)) else None


def operating_threshold(config, bundle) -> tuple[float, bool]:
    """(threshold, calibrated) a daemon or a scan decides at: `inference.threshold` when set (the
    operator's own choice, uncalibrated), else the site calibration's (`inference.calibration`),
    else the bundle's."""
    if config.inference.threshold is not None:
        return config.inference.threshold, False
    if config.inference.calibration:
        return float(read_calibration(config.inference.calibration, bundle)["threshold"]), True
    return bundle.threshold, False
