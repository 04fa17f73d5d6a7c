"""The promotion rule: a newcomer becomes champion iff its accuracy >= the champion's + min_delta.

Pure functions, no files: the registry finds the champion's accuracy on the newcomer's test
data (re-scoring it when the test data changed) and hands it here as a `ChampionScore`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistnn.core.records import is_number
from mnistnn.errors import ConfigError
from mnistnn.registry.records import PromotionDecision

#: Absorbs float rounding in `champion + min_delta`, so "equal" really means equal.
TOLERANCE = 1e-12


@dataclass(frozen=True)
class ChampionScore:
    """The champion's accuracy on the newcomer's test data."""

    version: str
    accuracy: float
    rescored: bool


def check_min_delta(value: object) -> float:
    """`value` as a float margin >= 0; ConfigError (a ValueError) otherwise.

    A negative margin would let worse models win; NaN would make every comparison False.
    """
    if not is_number(value) or float(value) < 0:
        raise ConfigError(f"min_delta must be a finite number >= 0, got {value!r}")
    return float(value)


def decide(
    version: str, accuracy: float, champion: ChampionScore | None, min_delta: float
) -> PromotionDecision:
    """Champion iff accuracy >= champion's (same test data) + min_delta, with a readable reason."""
    if champion is None:
        reason = f"first model: {version} (accuracy {accuracy:.4f}) becomes champion"
        return PromotionDecision(True, version, accuracy, None, None, min_delta, reason)
    needed = champion.accuracy + min_delta
    promoted = accuracy >= needed - TOLERANCE
    note = ", re-scored on the new test data" if champion.rescored else ""
    bar = f"needed >= {needed:.4f}" + (f" (min_delta {min_delta:g})" if min_delta else "")
    head = f"{version} (accuracy {accuracy:.4f})"
    if promoted:
        extra = f", {bar}" if min_delta else ""
        reason = (
            f"{head} replaces champion {champion.version} ({champion.accuracy:.4f}{note}{extra})"
        )
    else:
        reason = (
            f"{head} stays a challenger: champion {champion.version} has "
            f"{champion.accuracy:.4f}{note}, {bar}"
        )
    return PromotionDecision(
        promoted,
        version,
        accuracy,
        champion.version,
        champion.accuracy,
        min_delta,
        reason,
        champion.rescored,
    )
