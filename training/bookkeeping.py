"""What every training loop records per epoch, in one place: the history, TensorBoard scalars, a
log line, the best weights by validation loss and early stopping. Each loop keeps its own step
function on one page and hands its epoch's numbers here."""
from __future__ import annotations

import copy
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from engines.logs import get_logger

log = get_logger()
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train",
           "val_acc": "accuracy/val", "lr": "learning_rate"}


class EpochLog:
    """`record` each epoch's row (epoch, train_loss, train_acc, val_loss, val_acc, lr); it says
    when to stop (no better validation loss for `patience` epochs; None: never). `finish` puts
    the best weights back into the model."""

    def __init__(self, out: Path, patience: int | None = None):
        out.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(out / "tensorboard"))
        self.patience = patience
        self.history: list[dict] = []
        self.best_loss, self.best_epoch, self.best_state = float("inf"), -1, None
        self.stale = 0

    def record(self, row: dict, model) -> bool:
        """Records one epoch; True when training should stop early."""
        self.history.append(row)
        for key, name in SCALARS.items():
            if key in row:
                self.writer.add_scalar(name, row[key], row["epoch"])
        if row["val_loss"] < self.best_loss - 1e-6:
            self.best_loss, self.best_epoch = row["val_loss"], row["epoch"]
            self.best_state, self.stale = copy.deepcopy(model.state_dict()), 0
        else:
            self.stale += 1
        log.info("epoch", **{k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        if self.patience is not None and self.stale >= self.patience:
            log.info("early stop: validation loss stopped improving", best_epoch=self.best_epoch)
            return True
        return False

    def finish(self, model) -> None:
        self.writer.close()
        model.load_state_dict(self.best_state)
