"""The numbers that define a model's input pixels, as plain data: torch-free, because they travel
in every bundle's manifest and hosts without torch (capture, the supervisor) read manifests."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CropSpec:
    """How a face becomes a model input image; travels in the bundle manifest."""
    method: str = "box"        # box (square box + margin, the StyleGRU paper's method) | ffhq (5-landmark
                               # similarity) | meso (MesoNet's: nose-centred, eye-mouth axis vertical)
    margin: float = 0.2        # fraction of the box size added on every side (box method)
    size: int = 256            # output side in pixels
    select: str = "largest"    # largest | confident
    smoothing: int = 5         # centred moving-average length over frames (1 = off)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Normalization:
    """(x / 255 - mean) / std per RGB channel, at `size` pixels."""
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return asdict(self)

    def at(self, size: int) -> "Normalization":
        """The same mean and std at another input size."""
        return Normalization(size, self.mean, self.std)
