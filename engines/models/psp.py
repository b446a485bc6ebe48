"""pSp `GradualStyleEncoder` (IR-SE50 body, feature pyramid, 18 map2style heads).

Re-implemented from eladrich/pixel2style2pixel (models/encoders/psp_encoders.py, helpers.py)
with identical state-dict keys, so the official `psp_ffhq_encode.pt` loads strictly. The
encoder can be built for a subset of style levels: only those heads exist and run (`styles` is
a ModuleDict keyed by level, which yields the same `styles.<i>.` keys as the original ModuleList),
and only the pyramid levels they read are computed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

N_STYLES = 18
STYLE_DIM = 512
COARSE_END, MIDDLE_END = 3, 7          # levels 0-2 read c3 (16x16), 3-6 read p2 (32x32), 7-17 p1 (64x64)
PYRAMID_TAPS = {6: "c1", 20: "c2", 23: "c3"}  # body unit index -> pyramid input
# IR-SE50: (in_channels, depth, units); the first unit of each stage has stride 2
IR_SE50_STAGES = [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(w))))


class BottleneckIRSE(nn.Module):
    """BN -> Conv3x3 -> PReLU -> Conv3x3(stride) -> BN -> SE, plus a (pooled or projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """StyleGAN2's equalised-learning-rate linear layer: weight scaled by 1/sqrt(in) at run time."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) stride-2 Conv3x3 + LeakyReLU(0.01) down to 1x1, then EqualLinear."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


def level_source(level: int) -> str:
    """Which pyramid map a style level reads: c3, p2 or p1."""
    return "c3" if level < COARSE_END else "p2" if level < MIDDLE_END else "p1"


def level_spatial(level: int) -> int:
    return {"c3": 16, "p2": 32, "p1": 64}[level_source(level)]


class GradualStyleEncoder(nn.Module):
    """Input (B, 3, 256, 256) in [-1, 1] -> W+ codes (B, len(levels), 512), without latent_avg."""

    def __init__(self, levels: Sequence[int] = (9,), input_nc: int = 3):
        super().__init__()
        levels = tuple(sorted(set(int(lv) for lv in levels)))
        if not levels or not all(0 <= lv < N_STYLES for lv in levels):
            raise ValueError(f"style levels must be a non-empty subset of 0..{N_STYLES - 1}, got {levels}")
        self.levels = levels
        self.input_layer = nn.Sequential(nn.Conv2d(input_nc, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        units = []
        for in_ch, depth, n in IR_SE50_STAGES:
            units.append(BottleneckIRSE(in_ch, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleDict({str(lv): GradualStyleBlock(STYLE_DIM, level_spatial(lv)) for lv in levels})
        sources = {level_source(lv) for lv in levels}
        self.needs_p2 = bool(sources & {"p2", "p1"})
        self.needs_p1 = "p1" in sources
        if self.needs_p2:
            self.latlayer1 = nn.Conv2d(256, 512, 1)
        if self.needs_p1:
            self.latlayer2 = nn.Conv2d(128, 512, 1)

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        maps: dict[str, torch.Tensor] = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in PYRAMID_TAPS:
                maps[PYRAMID_TAPS[i]] = x
        if self.needs_p2:
            maps["p2"] = self._upsample_add(maps["c3"], self.latlayer1(maps["c2"]))
        if self.needs_p1:
            maps["p1"] = self._upsample_add(maps["p2"], self.latlayer2(maps["c1"]))
        codes = [self.styles[str(lv)](maps[level_source(lv)]) for lv in self.levels]
        return torch.stack(codes, dim=1)


class PSPStyleEncoder(nn.Module):
    """What pSp feeds its decoder, at the chosen levels: encoder codes + latent_avg (if enabled).

    State-dict keys: `encoder.*` (the GradualStyleEncoder's) and `latent_avg` (levels x 512)."""

    def __init__(self, levels: Sequence[int] = (9,), start_from_latent_avg: bool = True):
        super().__init__()
        self.encoder = GradualStyleEncoder(levels)
        self.levels = self.encoder.levels
        self.start_from_latent_avg = start_from_latent_avg
        self.register_buffer("latent_avg", torch.zeros(len(self.levels), STYLE_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(x)
        return codes + self.latent_avg if self.start_from_latent_avg else codes
