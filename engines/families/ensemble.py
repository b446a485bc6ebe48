"""An ensemble of frame-level networks: their P(fake) averaged per face before the window rule.

The ICPR 2020 paper's result is an ensemble (B4, B4Att and their siamese-trained variants), and
MesoNet's DF and F2F networks catch different manipulations. `dfwatch engines ensemble BUNDLE...
--out DIR` makes one bundle of several frame-level bundles: each member's network file is copied in
and pinned by its sha256 (the part file `ensemble.json` lists them, and its own checksum pins the
list), the frame part runs every member on the face and gives the mean of their P(fake), and the
window is decided by the mean P(fake) of its face frames.

Members share one face crop and one input normalisation (a face is cropped once per frame in the
pipeline); members whose preprocessing differs are refused with one line naming the difference.
An ensemble is not trained as one: fine-tune a member, then make the ensemble again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from engines.families.base import FrameFamily, Part
from engines.families.schema import ManifestBase, Model
from engines.pipeline.specs import CropSpec, Normalization

MEMBERS_DIR = "members"


class Member(Model):
    id: str                  # the member bundle's id
    family: str              # its family (a frame-level one)
    file: str                # its network, relative to the ensemble bundle
    sha256: str
    threshold: float         # its own bundle's threshold (for the record)
    sources: dict = {}       # what it was made from (weight file, training set, licence)


class FrameSection(Model):
    normalization: Normalization
    input: list[int]
    members: list[Member]
    aggregate: Literal["mean"] = "mean"      # per face: the members' mean P(fake); per window: the frames' mean


class EnsembleManifest(ManifestBase):
    family: Literal["mean-ensemble"]
    frame: FrameSection

    def frame_normalization(self) -> Normalization:
        return self.frame.normalization


class EnsembleFamily(FrameFamily):
    name = "mean-ensemble"
    title = "ensemble"
    summary = "several frame-level networks (dfwatch engines ensemble), their P(fake) averaged per face"
    parts = (Part("frame", "ensemble.json", ("faces",), ("probability",), per="frame", channels_last=True),)
    manifest_type = EnsembleManifest
    sources = ()
    sources_hint = "member bundles: use 'dfwatch engines ensemble BUNDLE... --out DIR'"
    demo_fps = 4.0
    has_demo = False         # made of other bundles: `dfwatch engines ensemble`
    frame_rule = "mean P(fake) of face frames (each the members' mean)"

    def torch_module(self, bundle, part: str):
        from engines.models.ensemble import MeanProbability

        return MeanProbability([self._member_module(bundle.root, m) for m in bundle.manifest.frame.members]).eval()

    @staticmethod
    def _member_module(root: Path, member: Member):
        from engines.checksums import sha256_file
        from engines.errors import BundleError
        from engines.families import get_family

        path = root / member.file
        if not path.is_file() or sha256_file(path) != member.sha256:
            raise BundleError(f"{path}: ensemble member {member.id} is missing or changed since the ensemble was "
                              "made (its sha256 differs); make the ensemble again")
        family = get_family(member.family)
        return family.probability(family.load_trained(path))

    def decide_frames(self, probabilities, threshold: float):
        from engines.pipeline.decision import frame_mean

        return frame_mean(probabilities, threshold)

    def _not_trained(self, *args, **kwargs):
        from engines.errors import DfwatchError

        raise DfwatchError("an ensemble is not trained as one: fine-tune a member bundle ('dfwatch train fit'), "
                           "then make the ensemble again")

    trainable = load_trained = save_trained = probability = trained_normalization = adopt_trained = _not_trained

    def describe(self, bundle, crop: str) -> list[str]:
        members = bundle.manifest.frame.members
        lines = [f"  window {bundle.frames} frames at {bundle.fps:g} fps, score = mean P(fake) of the face frames, "
                 f"each the mean of {len(members)} networks (fake >= {bundle.threshold:g}); {crop}"]
        for m in members:
            weights = m.sources.get("weights")
            lines.append(f"  member {m.id} ({m.family}{', ' + weights if weights else ''}; sha256 {m.sha256[:12]}...)")
        return lines

    def assemble_from_args(self, args, crop: CropSpec, trust: bool):
        from engines.errors import DfwatchError

        raise DfwatchError("an ensemble is made from bundles: dfwatch engines ensemble BUNDLE... --out DIR")


def assemble(out: Path, members: list, threshold: float | None = None, bundle_id: str | None = None) -> Path:
    """An ensemble bundle of loaded member bundles (engines.bundles.bundle.Bundle), which must be
    frame-level, trained, and share their face crop and normalisation."""
    import shutil

    from engines.checksums import sha256_file
    from engines.errors import BundleError
    from engines.families.writing import begin_bundle, finish_bundle

    if len(members) < 2:
        raise BundleError("an ensemble needs at least two member bundles")
    first = members[0]
    for b in members:
        if not isinstance(b.spec, FrameFamily) or isinstance(b.spec, EnsembleFamily):
            raise BundleError(f"{b.root}: a {b.family} bundle; an ensemble's members are frame-level networks "
                              "(mesonet, icpr-b4, icpr-b4att, dldfd)")
        if not b.trained:
            raise BundleError(f"{b.root}: untrained (its scores mean nothing); an ensemble's members are trained")
        for what, mine, theirs in (("face crop", _crop(b), _crop(first)),
                                   ("input normalisation", b.manifest.frame_normalization(),
                                    first.manifest.frame_normalization())):
            if mine != theirs:
                raise BundleError(f"{b.root}: its {what} ({mine}) differs from {first.root}'s ({theirs}); "
                                  "members must share one preprocessing")
    out = begin_bundle(out)
    (out / MEMBERS_DIR).mkdir()
    listed = []
    for i, b in enumerate(members):
        name = f"{MEMBERS_DIR}/{i}-{b.id}{b.path('frame').suffix}"
        shutil.copyfile(b.path("frame"), out / name)
        listed.append(Member(id=b.id, family=b.family, file=name, sha256=sha256_file(out / name),
                             threshold=b.threshold, sources=dict(b.manifest.sources)))
    (out / FAMILY.part("frame").file).write_text(json.dumps([m.model_dump() for m in listed], indent=1) + "\n")
    norm = first.manifest.frame_normalization()
    return finish_bundle(
        FAMILY, out, trained=True, bundle_id=bundle_id or "ensemble-" + "+".join(b.id for b in members)[:120],
        window=first.manifest.window.model_dump(), threshold=threshold if threshold is not None else first.threshold,
        crop=first.manifest.crop,
        frame=FrameSection(normalization=norm, input=[3, norm.size, norm.size], members=listed),
        sources={"members": [b.id for b in members]})


def _crop(bundle) -> CropSpec:
    """What shapes a member's pixels (the face rule `select` is the server's choice)."""
    c = bundle.manifest.crop
    return CropSpec(method=c.method, margin=c.margin, size=c.size, select="largest", smoothing=c.smoothing)


FAMILY = EnsembleFamily()
