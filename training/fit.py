"""`dfwatch train fit`: train the head on cached features — the training loop on one page.

AdamW; cosine annealing with warm restarts (first period 10 epochs, doubling, minimum lr =
initial / 100), stepped per epoch; mixup of style, content and targets with probability 0.7;
early stopping on validation loss (patience 12) keeping the best weights; TensorBoard scalars;
deterministic for a seed.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engines.models.checkpoints import save_head
from engines.models.stylegru import StyleGRUConfig, StyleGRUHead
from training.bookkeeping import EpochLog
from training.features import Features



@dataclass(frozen=True)
class FitConfig:
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-2
    first_period: int = 10          # epochs of the first cosine cycle; each next one doubles
    min_lr_ratio: float = 0.01
    mixup_prob: float = 0.7
    mixup_alpha: float = 0.5
    patience: int = 12
    seed: int = 0
    head: dict = field(default_factory=dict)  # StyleGRUConfig overrides (e.g. gru_hidden, width)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def head_config(train: Features, overrides: dict) -> StyleGRUConfig:
    """The seed head, with dimensions taken from the cached features."""
    _, t, levels, dim = train.style.shape
    return StyleGRUConfig(**{"frames": t, "style_levels": levels, "style_dim": dim,
                             "content_tokens": train.content.shape[1], "content_dim": train.content.shape[2],
                             **overrides})


def mixup(style, content, target, alpha: float, g: torch.Generator):
    lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    perm = torch.randperm(style.shape[0], generator=g)
    return (lam * style + (1 - lam) * style[perm], lam * content + (1 - lam) * content[perm],
            lam * target + (1 - lam) * target[perm])


@torch.no_grad()
def evaluate_loss(head: StyleGRUHead, data: Features, batch_size: int) -> tuple[float, float]:
    head.eval()
    losses, correct = [], 0
    for i in range(0, len(data), batch_size):
        s, c, y = data.tensors(slice(i, i + batch_size))
        logits = head(s, c)
        losses.append(torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").item())
        correct += int(((logits > 0).float() == y).sum())
    return sum(losses) / len(data), correct / len(data)


def fit(train: Features, val: Features, cfg: FitConfig, out: Path) -> dict:
    """Trains, keeps the best weights by validation loss, writes head.pt and history.json to `out`."""
    g = seed_everything(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    head = StyleGRUHead(head_config(train, cfg.head))
    head.set_input_stats(torch.from_numpy(train.style), torch.from_numpy(train.content))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=cfg.first_period, T_mult=2,
                                                                 eta_min=cfg.lr * cfg.min_lr_ratio)
    epochs = EpochLog(out, cfg.patience)
    for epoch in range(cfg.epochs):
        head.train()
        order = torch.randperm(len(train), generator=g)
        total, correct = 0.0, 0
        for i in range(0, len(train), cfg.batch_size):
            s, c, y = train.tensors(order[i:i + cfg.batch_size])
            if torch.rand(1, generator=g).item() < cfg.mixup_prob and len(y) > 1:
                s, c, y = mixup(s, c, y, cfg.mixup_alpha, g)
            logits = head(s, c)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            correct += int(((logits > 0).float() == (y > 0.5).float()).sum())
        lr = opt.param_groups[0]["lr"]
        sched.step()
        val_loss, val_acc = evaluate_loss(head, val, cfg.batch_size)
        if epochs.record({"epoch": epoch, "train_loss": total / len(train), "train_acc": correct / len(train),
                          "val_loss": val_loss, "val_acc": val_acc, "lr": lr}, head):
            break
    epochs.finish(head)
    history = epochs.history
    summary = {"best_epoch": epochs.best_epoch, "best_val_loss": epochs.best_loss, "epochs_run": len(history),
               "frame_spacing_s": train.median_spacing(), "train_videos": len(train), "val_videos": len(val),
               "config": asdict(cfg)}
    save_head(out / "head.pt", head.eval(), extra={"summary": json.dumps(summary)})
    (out / "history.json").write_text(json.dumps({"summary": summary, "history": history}, indent=1))
    return summary
