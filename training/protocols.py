"""`dfwatch train protocols`: the DLDFD paper's evaluation protocols (its Table 2).

- combined: real vs all manipulation methods, trained and tested on all of them;
- single:   real vs one method, for each method;
- cross:    trained on real vs every other method, tested on real vs the held-out one.
Each run starts from the bundle's initial weights, fits on the train split, keeps the best
epoch on the val split and reports the true classification rate (TCR: the share of test videos
whose majority vote is right, plus the per-frame rate) on the test split. Methods are the fake
videos' groups: FaceForensics++ method folders, or `fake/<method>/` in the generic layout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engines.errors import DfwatchError
from engines.logs import get_logger
from engines.backends import TorchRunner
from training.evaluate import evaluate_frames
from training.fit_frames import FrameFitConfig, fit_frames
from training.frames import VideoCrops, fake_groups, select

log = get_logger()
PROTOCOLS = ("combined", "single", "cross")


class ProtocolError(DfwatchError):
    pass


@dataclass(frozen=True)
class ProtocolRun:
    protocol: str
    tested: str                    # "all" or the method tested on
    train_methods: tuple[str, ...]
    test_methods: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.protocol}-{self.tested}"


def plan(methods: list[str], protocols: tuple[str, ...] = PROTOCOLS) -> list[ProtocolRun]:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ProtocolError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    if "cross" in protocols and len(methods) < 2:
        raise ProtocolError(f"the cross protocol needs at least two manipulation methods, the cache has "
                            f"{methods or 'none'} (generic layout: put fakes in fake/<method>/)")
    runs = []
    for protocol in protocols:
        if protocol == "combined":
            runs.append(ProtocolRun("combined", "all", tuple(methods), tuple(methods)))
        for m in methods:
            if protocol == "single":
                runs.append(ProtocolRun("single", m, (m,), (m,)))
            elif protocol == "cross":
                runs.append(ProtocolRun("cross", m, tuple(x for x in methods if x != m), (m,)))
    return runs


def run_protocols(bundle, splits: dict[str, list[VideoCrops]], cfg: FrameFitConfig, out: Path,
                  protocols: tuple[str, ...] = PROTOCOLS, device: str = "cpu") -> list[dict]:
    """Fits and evaluates every run of `protocols`; writes OUT/<run>/ and OUT/table.{json,md}."""
    methods = fake_groups(splits["train"])
    rows = []
    for run in plan(methods, protocols):
        log.info("protocol run", run=run.name, train=list(run.train_methods), test=list(run.test_methods))
        family = bundle.spec
        model = family.trainable(bundle)
        chosen = {split: select(videos, set(run.test_methods if split == "test" else run.train_methods))
                  for split, videos in splits.items()}
        fit_frames(family, model, chosen["train"], chosen["val"], bundle.frame_norm, cfg, out / run.name,
                   about={"protocol": run.name}, device=device)
        report = evaluate_frames(TorchRunner("frame", family.probability(model.eval())), chosen["test"],
                                 bundle.frame_norm, bundle.threshold, out / run.name / "eval",
                                 about={"protocol": run.name}, family=family)
        rows.append({"protocol": run.protocol, "tested": run.tested, "trained_on": list(run.train_methods),
                     "test_videos": report["videos"], "tcr": report["tcr"], "frame_tcr": report["frame_tcr"]})
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text(table_markdown(rows))
    return rows


def table_markdown(rows: list[dict]) -> str:
    lines = ["| protocol | tested on | trained on | test videos | TCR (video, majority vote) | TCR (frame) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        frame = "-" if r["frame_tcr"] is None else f"{100 * r['frame_tcr']:.2f} %"
        lines.append(f"| {r['protocol']} | {r['tested']} | {', '.join(r['trained_on'])} | {r['test_videos']} | "
                     f"{100 * r['tcr']:.2f} % | {frame} |")
    return "\n".join(lines) + "\n"
