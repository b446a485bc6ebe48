"""pytorchvideo `slow_r50`: the Kinetics-400 3D ResNet-50 (Slow pathway, 8x8).

Re-implemented from facebookresearch/pytorchvideo (models/resnet.py, models/hub/resnet.py) with
identical state-dict keys (`blocks.0` stem, `blocks.1-4` bottleneck stages, `blocks.5` head), so
`SLOW_8x8_R50.pyth` loads strictly. The detector uses `features()`: the global average of the
last stage (2048-d) for any clip size; `logits()` reproduces the released classifier.
"""
from __future__ import annotations

import torch
from torch import nn

FEATURE_DIM = 2048
KINETICS_CLASSES = 400
# (blocks, inner width, output width, spatial stride, temporal kernel of conv_a) per stage
STAGES = [(3, 64, 256, 1, 1), (4, 128, 512, 2, 1), (6, 256, 1024, 2, 3), (3, 512, 2048, 2, 3)]


def _bn(c: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(c, eps=1e-5, momentum=0.1)


class ResNetBasicStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 64, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.norm = _bn(64)
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(x))))


class BottleneckBlock(nn.Module):
    """conv_a (t x 1 x 1) -> conv_b (1 x 3 x 3, spatial stride) -> conv_c (1 x 1 x 1), BN + ReLU between."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: int, t_kernel: int):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, (t_kernel, 1, 1), padding=(t_kernel // 2, 0, 0), bias=False)
        self.norm_a = _bn(dim_inner)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.norm_b = _bn(dim_inner)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = _bn(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm_a(self.conv_a(x)))
        x = torch.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: int, t_kernel: int):
        super().__init__()
        self.branch1_conv = self.branch1_norm = None
        if dim_in != dim_out or stride != 1:
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, (1, stride, stride), bias=False)
            self.branch1_norm = _bn(dim_out)
        self.branch2 = BottleneckBlock(dim_in, dim_inner, dim_out, stride, t_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return torch.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int, stride: int, t_kernel: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, stride if i == 0 else 1, t_kernel)
            for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ResNetBasicHead(nn.Module):
    """The released classifier: AvgPool3d(8,7,7) stride 1, dropout, per-position Linear, global mean."""

    def __init__(self, dim_in: int = FEATURE_DIM, classes: int = KINETICS_CLASSES):
        super().__init__()
        self.pool = nn.AvgPool3d((8, 7, 7), stride=1)
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(dim_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(x))
        x = self.proj(x.permute(0, 2, 3, 4, 1))
        return x.mean(dim=(1, 2, 3))


class SlowR50(nn.Module):
    """forward(clip (B, 3, T, H, W), Kinetics-normalised) -> (B, 2048) features."""

    def __init__(self):
        super().__init__()
        stages, dim_in = [], 64
        for depth, inner, out, stride, t_kernel in STAGES:
            stages.append(ResStage(depth, dim_in, inner, out, stride, t_kernel))
            dim_in = out
        self.blocks = nn.ModuleList([ResNetBasicStem(), *stages, ResNetBasicHead()])

    def trunk(self, clip: torch.Tensor) -> torch.Tensor:
        x = clip
        for block in self.blocks[:5]:
            x = block(x)
        return x

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        return self.trunk(clip).mean(dim=(2, 3, 4))

    def logits(self, clip: torch.Tensor) -> torch.Tensor:
        return self.blocks[5](self.trunk(clip))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.features(clip)
