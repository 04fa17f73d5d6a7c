"""The promotion rule: through the registry, and as a pure function without files."""

from __future__ import annotations

import numpy as np
import pytest

from mnistnn.errors import ConfigError
from mnistnn.registry.promotion import TOLERANCE, ChampionScore, check_min_delta, decide
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


# -- the rule as a pure function ------------------------------------------------------------------
def _champion(accuracy: float, rescored: bool = False) -> ChampionScore:
    return ChampionScore("v0001", accuracy, rescored)


def test_first_model_is_always_promoted() -> None:
    decision = decide("v0001", 0.0, None, 0.5)
    assert decision.promoted
    assert (decision.champion_version, decision.champion_accuracy) == (None, None)
    assert (decision.min_delta, decision.champion_rescored) == (0.5, False)
    assert decision.reason == "first model: v0001 (accuracy 0.0000) becomes champion"


def test_equal_accuracy_promotes_at_zero_min_delta() -> None:
    decision = decide("v0002", 0.9, _champion(0.9), 0.0)
    assert decision.promoted
    assert decision.reason == "v0002 (accuracy 0.9000) replaces champion v0001 (0.9000)"


def test_worse_stays_a_challenger() -> None:
    decision = decide("v0002", 0.89, _champion(0.9), 0.0)
    assert not decision.promoted
    assert decision.reason == (
        "v0002 (accuracy 0.8900) stays a challenger: champion v0001 has 0.9000, needed >= 0.9000"
    )


def test_better_by_less_than_min_delta_is_not_promoted() -> None:
    decision = decide("v0002", 0.905, _champion(0.9), 0.01)
    assert not decision.promoted
    assert decision.reason == (
        "v0002 (accuracy 0.9050) stays a challenger: champion v0001 has 0.9000, "
        "needed >= 0.9100 (min_delta 0.01)"
    )


def test_better_by_more_than_min_delta_names_the_bar() -> None:
    decision = decide("v0002", 0.92, _champion(0.9), 0.01)
    assert decision.promoted
    assert decision.reason == (
        "v0002 (accuracy 0.9200) replaces champion v0001 "
        "(0.9000, needed >= 0.9100 (min_delta 0.01))"
    )


def test_rescored_champion_is_noted() -> None:
    won = decide("v0002", 0.85, _champion(0.8, rescored=True), 0.0)
    assert won.promoted
    assert won.champion_rescored
    assert won.reason == (
        "v0002 (accuracy 0.8500) replaces champion v0001 (0.8000, re-scored on the new test data)"
    )
    lost = decide("v0002", 0.93, _champion(0.95, rescored=True), 0.0)
    assert not lost.promoted
    assert lost.champion_rescored
    assert lost.reason == (
        "v0002 (accuracy 0.9300) stays a challenger: champion v0001 has 0.9500, "
        "re-scored on the new test data, needed >= 0.9500"
    )


def test_tolerance_absorbs_rounding_of_champion_plus_min_delta() -> None:
    assert 0.2 + 0.1 > 0.3  # float rounding: the bar lands just above the accuracy
    assert decide("v0002", 0.3, _champion(0.2), 0.1).promoted


@pytest.mark.parametrize(
    ("below", "promoted"),
    [
        pytest.param(0.0, True, id="equal"),
        pytest.param(TOLERANCE / 2, True, id="within-tolerance"),
        pytest.param(2 * TOLERANCE, False, id="beyond-tolerance"),
    ],
)
def test_tolerance_is_tiny(below: float, promoted: bool) -> None:
    assert TOLERANCE == 1e-12
    assert decide("v0002", 0.5 - below, _champion(0.5), 0.0).promoted is promoted


# -- check_min_delta ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 0.0, 0.01, 1, 5, np.float64(0.002)])
def test_check_min_delta_accepts_finite_non_negative(value: object) -> None:
    result = check_min_delta(value)
    assert type(result) is float
    assert result == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-0.1, "-0.1"),
        (-1e-300, "-1e-300"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (True, "True"),
        ("0.1", "'0.1'"),
        (None, "None"),
    ],
)
def test_check_min_delta_rejects(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_min_delta(value)
    assert isinstance(info.value, ValueError)  # callers catching ValueError still work
    assert str(info.value) == f"min_delta must be a finite number >= 0, got {shown}"
