"""The promotion rule: through the registry, and as a pure function without files."""

from __future__ import annotations

import pytest

from mnistnn.registry.store import ModelRegistry
from tests.registry.conftest import register


# -- promotion rule -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("champion_acc", "new_acc", "min_delta", "promoted"),
    [
        pytest.param(0.90, 0.95, 0.0, True, id="better"),
        pytest.param(0.90, 0.90, 0.0, True, id="equal"),
        pytest.param(0.90, 0.85, 0.0, False, id="worse"),
        pytest.param(0.90, 0.905, 0.01, False, id="within-min-delta"),
        pytest.param(0.9702, 0.9712, 0.001, True, id="exactly-min-delta"),
        pytest.param(0.90, 0.92, 0.01, True, id="beyond-min-delta"),
    ],
)
def test_promotion_rule(
    registry: ModelRegistry, champion_acc: float, new_acc: float, min_delta: float, promoted: bool
) -> None:
    register(registry, 1, champion_acc)
    decision = register(registry, 2, new_acc, min_delta=min_delta)
    assert decision.promoted is promoted
    assert decision.version == "v0002"
    assert (decision.champion_version, decision.champion_accuracy) == ("v0001", champion_acc)
    assert decision.min_delta == min_delta
    assert f"{new_acc:.4f}" in decision.reason
    assert f"{champion_acc:.4f}" in decision.reason
    champion = registry.champion()
    assert champion is not None
    assert champion.version == ("v0002" if promoted else "v0001")
    assert ("replaces champion v0001" in decision.reason) is promoted
    assert ("stays a challenger" in decision.reason) is not promoted


def test_reason_strings_match_the_issue(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9701)
    assert (
        register(registry, 2, 0.9712).reason
        == "v0002 (accuracy 0.9712) replaces champion v0001 (0.9701)"
    )
    assert register(registry, 3, 0.9102).reason == (
        "v0003 (accuracy 0.9102) stays a challenger: champion v0002 has 0.9712, needed >= 0.9712"
    )
