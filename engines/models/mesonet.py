"""MesoNet (Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video Forgery Detection
Network", IEEE WIFS 2018), rebuilt in PyTorch so that it reads the published Keras HDF5 weights
(github.com/DariusAf/MesoNet, Apache-2.0) directly.

Two architectures from the authors' classifiers.py: Meso4 (four convolution blocks) and
MesoInception4 (two inception blocks with dilated 3x3 branches, then two convolution blocks).
What Keras does and this rebuild does the same way: kernels stored (kh, kw, in, out), 'same'
padding (every size here divides evenly, so a symmetric pad of (k - 1) / 2 x dilation), ReLU inside
each convolution, then BatchNormalization with epsilon 1e-3, then max pooling; Flatten over
(H, W, C); a 16-unit Dense with LeakyReLU 0.1; one output. Dropout is inactive at inference.

The published output is a sigmoid of **P(real)** (the authors' data generator sorts the class
folders, `df` < `real`): `logit` is what the file's network computes, and `MesoProbability`
serves P(fake) = 1 - sigmoid(logit) = sigmoid(-logit). Input: (N, 3, 256, 256) RGB in [0, 1].
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCHITECTURES = ("meso4", "mesoinception4")
INPUT_SIZE = 256


@dataclass(frozen=True)
class MesoConfig:
    """What a MesoNet file holds besides its weights (dfwatch's own format keeps it as a dict)."""
    architecture: str = "meso4"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MesoConfig":
        cfg = cls(**d)
        if cfg.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown MesoNet architecture {cfg.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        return cfg


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=(k - 1) // 2 * dilation, dilation=dilation)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)   # Keras's default epsilon


class Inception(nn.Module):
    """MesoInception's block: 1x1; 1x1 then 3x3; 1x1 then 3x3 dilation 2; 1x1 then 3x3 dilation 3;
    concatenated on channels."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.x1 = _conv(cin, a, 1)
        self.x2a, self.x2b = _conv(cin, b, 1), _conv(b, b, 3)
        self.x3a, self.x3b = _conv(cin, c, 1), _conv(c, c, 3, dilation=2)
        self.x4a, self.x4b = _conv(cin, d, 1), _conv(d, d, 3, dilation=3)
        self.out_channels = a + b + c + d

    def convs(self) -> list[nn.Conv2d]:
        """In the order the authors' code built them (the h5 file's numbering)."""
        return [self.x1, self.x2a, self.x2b, self.x3a, self.x3b, self.x4a, self.x4b]

    def forward(self, x):
        relu = torch.relu
        return torch.cat([relu(self.x1(x)), relu(self.x2b(relu(self.x2a(x)))),
                          relu(self.x3b(relu(self.x3a(x)))), relu(self.x4b(relu(self.x4a(x))))], dim=1)


class MesoNet(nn.Module):
    """Meso4 or MesoInception4; `forward` gives the published network's logit (of P(real)), (N,)."""

    def __init__(self, cfg: MesoConfig = MesoConfig()):
        super().__init__()
        architecture = MesoConfig.from_dict(cfg.to_dict()).architecture
        self.cfg, self.architecture = cfg, architecture
        if architecture == "meso4":
            self.block1, self.block2 = _conv(3, 8, 3), _conv(8, 8, 5)
            widths = (8, 8)
        else:
            self.block1, self.block2 = Inception(3, 1, 4, 4, 2), Inception(11, 2, 4, 4, 2)
            widths = (11, 12)
        self.bn1, self.bn2 = _bn(widths[0]), _bn(widths[1])
        self.conv3, self.bn3 = _conv(widths[1], 16, 5), _bn(16)
        self.conv4, self.bn4 = _conv(16, 16, 5), _bn(16)
        self.dense1, self.dense2 = nn.Linear(16 * 8 * 8, 16), nn.Linear(16, 1)

    def _block(self, block: nn.Module, x):
        return block(x) if isinstance(block, Inception) else torch.relu(block(x))

    def forward(self, x):
        pool = nn.functional.max_pool2d
        x = pool(self.bn1(self._block(self.block1, x)), 2)
        x = pool(self.bn2(self._block(self.block2, x)), 2)
        x = pool(self.bn3(torch.relu(self.conv3(x))), 2)
        x = pool(self.bn4(torch.relu(self.conv4(x))), 4)
        x = x.permute(0, 2, 3, 1).flatten(1)          # Keras's Flatten: (H, W, C) order
        x = nn.functional.leaky_relu(self.dense1(x), 0.1)
        return self.dense2(x)[:, 0]

    # -- the Keras layers, in the order the authors' code built them -------------------------------
    def convs(self) -> list[nn.Conv2d]:
        blocks = [b.convs() if isinstance(b, Inception) else [b] for b in (self.block1, self.block2)]
        return [*blocks[0], *blocks[1], self.conv3, self.conv4]

    def norms(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2, self.bn3, self.bn4]

    def denses(self) -> list[nn.Linear]:
        return [self.dense1, self.dense2]


class FakeLogit(nn.Module):
    """Training's view: (N,) logits of P(fake) (the published network's are of P(real))."""

    def __init__(self, net: MesoNet):
        super().__init__()
        self.net, self.cfg = net, net.cfg

    def forward(self, faces):
        return -self.net(faces)


class MesoProbability(nn.Module):
    """What a bundle serves: P(fake) per face, (N,) = 1 - the published P(real)."""

    def __init__(self, net: MesoNet):
        super().__init__()
        self.net = net

    def forward(self, faces):
        return torch.sigmoid(-self.net(faces))


# ---- the published Keras HDF5 files -----------------------------------------------------------------

def _layer_number(name: str) -> int:
    return int(re.search(r"_(\d+)$", name).group(1)) if re.search(r"_(\d+)$", name) else 0


def keras_layers(h5) -> dict[str, list[dict]]:
    """kind (conv2d, batch_normalization, dense) -> each layer's weights {name: array}, in the
    order the layers were built (Keras numbers layers as it creates them)."""
    import numpy as np

    group = h5["model_weights"] if "model_weights" in h5 else h5
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", list(group))]
    found: dict[str, list[tuple[int, dict]]] = {"conv2d": [], "batch_normalization": [], "dense": []}
    for name in names:
        kind = re.sub(r"_\d+$", "", name)
        if kind not in found:
            continue
        weights = {}
        group[name].visititems(lambda key, item: weights.__setitem__(key.rsplit("/", 1)[-1].split(":")[0],
                                                                     np.asarray(item)) if hasattr(item, "shape") else None)
        found[kind].append((_layer_number(name), weights))
    return {kind: [w for _, w in sorted(layers, key=lambda x: x[0])] for kind, layers in found.items()}


def architecture_of(layers: dict[str, list[dict]]) -> str:
    """meso4 (4 convolutions) or mesoinception4 (16), from the file's layers."""
    n = len(layers["conv2d"])
    if n == 4:
        return "meso4"
    if n == 16:
        return "mesoinception4"
    raise ValueError(f"{n} convolution layers: neither Meso4 (4) nor MesoInception4 (16)")


def from_keras(layers: dict[str, list[dict]]) -> MesoNet:
    """The network with the file's weights (strict: every layer and shape must match)."""
    import numpy as np

    net = MesoNet(MesoConfig(architecture_of(layers))).eval()
    targets = (("conv2d", net.convs()), ("batch_normalization", net.norms()), ("dense", net.denses()))
    with torch.no_grad():
        for kind, modules in targets:
            if len(layers[kind]) != len(modules):
                raise ValueError(f"{len(layers[kind])} {kind} layers, {net.architecture} has {len(modules)}")
            for i, (weights, module) in enumerate(zip(layers[kind], modules)):
                if kind == "conv2d":
                    values = {"weight": np.transpose(weights["kernel"], (3, 2, 0, 1)), "bias": weights["bias"]}
                elif kind == "dense":
                    values = {"weight": weights["kernel"].T, "bias": weights["bias"]}
                else:
                    values = {"weight": weights["gamma"], "bias": weights["beta"],
                              "running_mean": weights["moving_mean"], "running_var": weights["moving_variance"]}
                for key, value in values.items():
                    target = getattr(module, key)
                    if tuple(target.shape) != value.shape:
                        raise ValueError(f"{kind} layer {i + 1}: {key} has shape {value.shape}, "
                                         f"{net.architecture} needs {tuple(target.shape)}")
                    target.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))
    return net
