"""The served module of an ensemble bundle (engines/families/ensemble.py): the members' mean P(fake)."""
from __future__ import annotations

import torch
from torch import nn


class MeanProbability(nn.Module):
    """(N,) mean of the members' P(fake) for the same (N, 3, S, S) faces."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, faces):
        return torch.stack([m(faces) for m in self.members]).mean(dim=0)
