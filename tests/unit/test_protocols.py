"""The DLDFD paper's protocols as runs (training/protocols.py: plan): which methods each run
trains on and tests on. Running them end to end: tests/e2e/test_training_dldfd.py."""
from __future__ import annotations

import pytest

from training.protocols import ProtocolError, plan


def test_every_protocol_plans_its_runs():
    runs = [(r.name, r.train_methods, r.test_methods) for r in plan(["retouch", "swap"])]
    assert runs == [("combined-all", ("retouch", "swap"), ("retouch", "swap")),
                    ("single-retouch", ("retouch",), ("retouch",)), ("single-swap", ("swap",), ("swap",)),
                    ("cross-retouch", ("swap",), ("retouch",)), ("cross-swap", ("retouch",), ("swap",))]
    assert [r.name for r in plan(["a", "b", "c"], ("cross",))] == ["cross-a", "cross-b", "cross-c"]
    assert plan(["a", "b", "c"], ("cross",))[0].train_methods == ("b", "c")


def test_cross_needs_two_methods_and_names_are_checked():
    with pytest.raises(ProtocolError, match="at least two manipulation methods"):
        plan(["swap"], ("cross",))
    with pytest.raises(ProtocolError, match="unknown protocol"):
        plan(["swap"], ("leave-one-out",))
