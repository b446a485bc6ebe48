"""The registry of model families: which families this dfwatch serves, and the manifest schema
discriminated on `family`.

In the manner of timm's model registry: each family module declares one `Family` (its parts
with their input/output names, which part runs per frame and which is trained, file names,
preprocessing constants, its window rule, what training caches) and is listed here. Code
elsewhere asks `get_family(name)` and never tests a family's name.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from engines.families import dldfd, ensemble, icpr, mesonet, stylegru
from engines.families.base import CACHE_FACE_CROPS, CACHE_WINDOW_INPUTS, Family, Part

FAMILIES: dict[str, Family] = {f.name: f for f in (stylegru.FAMILY, dldfd.FAMILY, icpr.B4, icpr.B4ATT, mesonet.FAMILY,
                                                        ensemble.FAMILY)}
DEFAULT_FAMILY = stylegru.FAMILY.name   # `engines bundle` without --family
DEMO_FAMILY = mesonet.FAMILY.name       # `dfwatch demo` without --family: a real, trained detector (shipped weights)

# one manifest type may serve several families (icpr-b4, icpr-b4att): each type once in the union
Manifest = Annotated[Union[tuple(dict.fromkeys(f.manifest_type for f in FAMILIES.values()))],
                     Field(discriminator="family")]
MANIFEST_ADAPTER = TypeAdapter(Manifest)

__all__ = ["CACHE_FACE_CROPS", "CACHE_WINDOW_INPUTS", "DEFAULT_FAMILY", "DEMO_FAMILY", "FAMILIES", "Family", "Manifest",
           "MANIFEST_ADAPTER", "Part", "demo_family_names", "family_names", "get_family"]


def family_names() -> tuple[str, ...]:
    return tuple(FAMILIES)


def demo_family_names() -> tuple[str, ...]:
    """The families `dfwatch demo` and the benchmarks can build a bundle of by themselves (an
    ensemble is made of other bundles)."""
    return tuple(name for name, f in FAMILIES.items() if f.has_demo)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"model family {name!r} is unknown (this dfwatch serves {', '.join(FAMILIES)})") from None
