"""DLDFD (Singh & Ramachandra, "Recurrence Free 2D Convolution Approach for Deep Fake Detection"):
a frame-level detector, one face crop in, one logit out.

    face (B, 3, 224, 224), ImageNet-normalised
      -> stem: three parallel 3x3 convolutions, 64 filters each, concatenated (192 channels)
               -> 1x1 convolution back to 3 channels
      -> trunk: an unmodified torchvision ResNet-50 up to its global average pool (2048)
      -> fc: Linear(2048, 1) -> logit

Our reading of the paper: its "1x1x192" layer is a 1x1 convolution over the 192 concatenated
channels with 3 outputs (it could also be read as 192 outputs), so that ResNet-50's pretrained
first convolution still fits and the trunk keeps its ImageNet weights whole. The paper names no
activation between the stem's layers and we add none. The trunk's key names are torchvision's
`resnet50` (the stem and fc are ours), so an ImageNet state dict loads strictly into `trunk`
once its 1000-class classifier (`fc.*`) is set aside: the one-logit `fc` replaces it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision
from torch import nn

FEATURE_DIM = 2048  # ResNet-50's pooled features


@dataclass(frozen=True)
class DLDFDConfig:
    input_size: int = 224   # face crop side in pixels (the paper's); the network accepts others
    branches: int = 3       # parallel 3x3 convolutions
    filters: int = 64       # filters per branch

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DLDFDConfig":
        return cls(**d)


class ParallelStem(nn.Module):
    """Parallel 3x3 convolutions, concatenated, and a 1x1 convolution back to RGB-like 3 channels."""

    def __init__(self, branches: int = 3, filters: int = 64):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(3, filters, 3, padding=1) for _ in range(branches))
        self.squeeze = nn.Conv2d(branches * filters, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.squeeze(torch.cat([branch(x) for branch in self.branches], dim=1))


def resnet50_trunk() -> torchvision.models.ResNet:
    """torchvision's ResNet-50 with its classifier replaced by the identity (pooled 2048 features)."""
    trunk = torchvision.models.resnet50(weights=None)
    trunk.fc = nn.Identity()
    return trunk


class DLDFD(nn.Module):
    def __init__(self, cfg: DLDFDConfig = DLDFDConfig()):
        super().__init__()
        self.cfg = cfg
        self.stem = ParallelStem(cfg.branches, cfg.filters)
        self.trunk = resnet50_trunk()
        self.fc = nn.Linear(FEATURE_DIM, 1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalised faces -> (B,) logits."""
        return self.fc(self.trunk(self.stem(faces))).squeeze(-1)


class DLDFDProbability(nn.Module):
    """What the daemon runs per frame: P(fake) of each face."""

    def __init__(self, model: DLDFD):
        super().__init__()
        self.model = model

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(faces))
