"""The ICPR 2020 frame detectors: EfficientNet-B4 and EfficientNet-B4 with attention.

Bonettini, Cannas, Mandelli, Bondi, Bestagini, Tubaro, "Video Face Manipulation Detection Through
Ensemble of CNNs", ICPR 2020. Written from the paper and the published checkpoints' layout (the
authors' code is GPL-3.0 and is not used here): efficientnet_pytorch's `efficientnet-b4` trunk
(Apache-2.0), built at its native 380-px image size so its convolutions keep the static "same"
padding the published weights were trained with, without its ImageNet classifier; global average
pooling to 1792 features, dropout (inactive at inference) and one linear unit: the logit of the
face being manipulated. The attention variant ("AutoAtt") puts a 1x1 convolution (56 -> 1) after
the trunk's 10th block (index 9); its sigmoid is a spatial attention map that multiplies that
block's output before the remaining blocks.

The published `*_bestval-<sha256>.pth` files hold the network's state under `net` (keys
`efficientnet.*` and `classifier.*`) beside optimiser state and bookkeeping.
"""
from __future__ import annotations

import torch
from torch import nn

TRUNK = "efficientnet-b4"
FEATURES = 1792                # channels of the B4 trunk's last convolution
ATTENTION_BLOCK = 9            # the attention map multiplies this block's output (56 channels in B4)
ATTENTION_CHANNELS = 56
VARIANTS = ("b4", "b4att")


def _trunk():
    from efficientnet_pytorch import EfficientNet

    trunk = EfficientNet.from_name(TRUNK)   # image size 380: the static padding the weights were trained with
    del trunk._fc                           # the published networks have no ImageNet classifier
    trunk.set_swish(memory_efficient=False)  # plain x * sigmoid(x): the same values, and exportable to ONNX
    return trunk


class ICPRNet(nn.Module):
    """Face crops (B, 3, 224, 224), ImageNet-normalised RGB -> (B,) logits of 'manipulated' (the
    published network's (B, 1) output, flattened as every frame model here gives it)."""

    def __init__(self, variant: str = "b4"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r}: one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.efficientnet = _trunk()
        if variant == "b4att":
            self.efficientnet.attconv = nn.Conv2d(ATTENTION_CHANNELS, 1, kernel_size=1)
        self.classifier = nn.Linear(FEATURES, 1)
        self.dropout = nn.Dropout(self.efficientnet._global_params.dropout_rate)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk up to the attention block; its (B, 1, H, W) map in [0, 1]."""
        net = self.efficientnet
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:ATTENTION_BLOCK + 1]:
            x = block(x)
        return torch.sigmoid(net.attconv(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1792) pooled features, before dropout and the classifier."""
        net = self.efficientnet
        x = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate * i / len(net._blocks) if self.training else None
            x = block(x, drop_connect_rate=rate)
            if i == ATTENTION_BLOCK and self.variant == "b4att":
                x = x * torch.sigmoid(net.attconv(x))
        x = net._swish(net._bn1(net._conv_head(x)))
        return net._avg_pooling(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x))).squeeze(-1)


class ICPRProbability(nn.Module):
    """The served part: P(fake) = sigmoid(logit) per face, (B,)."""

    def __init__(self, net: ICPRNet):
        super().__init__()
        self.net = net

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(faces))


def variant_of(state: dict) -> str:
    """Which network a published state dict is: the attention variant has `efficientnet.attconv.*`."""
    return "b4att" if "efficientnet.attconv.weight" in state else "b4"
