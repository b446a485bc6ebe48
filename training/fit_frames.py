"""`dfwatch train fit` for a frame-level family (DLDFD, the ICPR 2020 detectors): the whole
per-frame network on cached face crops, on one page.

DLDFD's recipe: ImageNet-initialised ResNet-50 (the bundle's starting weights), per-frame samples
with random horizontal flips and ImageNet normalisation, binary cross-entropy weighted against
class imbalance (fake frames weighted by real/fake), Adam (lr 1e-3, beta1 0.9), 25 epochs; the
ICPR detectors are fine-tuned from their published weights the same way (a smaller lr suits
them: --lr 1e-5 is the authors'). We keep the weights of the epoch with the lowest validation
loss and log per-epoch scalars to TensorBoard. The family says what the network is and how its
file is written (`Family.trainable`, `save_trained`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engines.families.base import Family
from engines.pipeline.preprocess import Normalization
from training.bookkeeping import EpochLog
from training.fit import seed_everything
from training.frames import FaceFrames, VideoCrops



@dataclass(frozen=True)
class FrameFitConfig:
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.9
    flip: bool = True
    seed: int = 0


def fake_weight(labels: np.ndarray) -> float:
    """BCE weight of the fake class, real frames / fake frames, so both classes count equally."""
    fakes = int(labels.sum())
    return (len(labels) - fakes) / fakes if fakes else 1.0


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, data: FaceFrames, batch_size: int, pos_weight: torch.Tensor,
                  device: str = "cpu") -> tuple[float, float]:
    model.eval()
    total, correct = 0.0, 0
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total += torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, pos_weight=pos_weight, reduction="sum").item()
        correct += int(((logits > 0).float() == y).sum())
    return total / len(data), correct / len(data)


def fit_frames(family: Family, model: torch.nn.Module, train: list[VideoCrops], val: list[VideoCrops],
               norm: Normalization, cfg: FrameFitConfig, out: Path, about: dict | None = None,
               device: str = "cpu") -> dict:
    """Trains `model` in place (on `device`), keeps the best weights by validation loss, writes
    model.pt and history.json to `out`."""
    g = seed_everything(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    train_frames = FaceFrames(train, norm, flip=cfg.flip, seed=cfg.seed)
    val_frames = FaceFrames(val, norm)
    if not len(train_frames) or not len(val_frames):
        raise ValueError(f"no face crops to {'train' if not len(train_frames) else 'validate'} on "
                         "(every cached frame of that split fell back to the centre crop)")
    pos_weight = torch.tensor(fake_weight(train_frames.labels()), device=device)
    model.to(device)
    loader = torch.utils.data.DataLoader(train_frames, batch_size=cfg.batch_size, shuffle=True, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    epochs = EpochLog(out)  # the paper trains a fixed number of epochs and keeps the best
    for epoch in range(cfg.epochs):
        model.train()
        total, correct = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            correct += int(((logits > 0).float() == y).sum())
        val_loss, val_acc = evaluate_loss(model, val_frames, cfg.batch_size, pos_weight, device)
        epochs.record({"epoch": epoch, "train_loss": total / len(train_frames),
                       "train_acc": correct / len(train_frames), "val_loss": val_loss, "val_acc": val_acc,
                       "lr": opt.param_groups[0]["lr"]}, model)
    epochs.finish(model)
    model.cpu()
    history = epochs.history
    spacings = [v.spacing for v in train if v.spacing > 0]
    summary = {"family": family.name, "best_epoch": epochs.best_epoch, "best_val_loss": epochs.best_loss,
               "epochs_run": len(history), "frame_spacing_s": float(np.median(spacings)) if spacings else 0.0,
               "train_videos": len(train), "val_videos": len(val), "train_frames": len(train_frames),
               "val_frames": len(val_frames), "fake_weight": float(pos_weight), "config": asdict(cfg),
               "about": about or {}}
    family.save_trained(out / "model.pt", model.eval(), extra={"summary": json.dumps(summary)})
    (out / "history.json").write_text(json.dumps({"summary": summary, "history": history}, indent=1))
    return summary
