"""Promotion policies and guardrails: from paired evidence to a verdict, in one sentence.

`better` is the old rule (newcomer accuracy >= champion's + min_delta); `significant` promotes
only when McNemar's exact test says the newcomer is better (p < alpha). Under every policy the
guardrails refuse a newcomer below `min_accuracy`, one that lost a digit class beyond chance
(see mnistnn.registry.evidence), and, when recent data exists, one significantly worse there or
that lost a class there. A close call (grey zone) is a newcomer ahead but not significantly so,
or one that passes but sits near a guardrail; with approval "ask" a person decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mnistnn.core.records import is_number
from mnistnn.errors import ConfigError
from mnistnn.registry.evidence import Evidence

Policy = Literal["better", "significant"]
POLICIES: tuple[Policy, ...] = ("better", "significant")
DEFAULT_POLICY: Policy = "significant"
DEFAULT_ALPHA = 0.05
#: Absorbs float rounding in `champion + min_delta`, so "equal" really means equal.
TOLERANCE = 1e-12
#: An accuracy this close above `min_accuracy` is near the floor (a close call).
FLOOR_MARGIN = 0.005
Approval = Literal["auto", "ask"]
APPROVALS: tuple[Approval, ...] = ("auto", "ask")
#: How long a close call waits for a person before the newcomer stays a challenger (24 h).
DEFAULT_APPROVAL_TIMEOUT = 24 * 3600.0


def check_alpha(value: float) -> float:
    """The significance level: a number strictly between 0 and 1."""
    if not is_number(value) or not 0 < float(value) < 1:
        raise ConfigError(f"alpha must be a number between 0 and 1, got {value!r}")
    return float(value)


def check_min_accuracy(value: float) -> float:
    """The accuracy floor: a number in 0..1."""
    if not is_number(value) or not 0 <= float(value) <= 1:
        raise ConfigError(f"min_accuracy must be in 0..1, got {value!r}")
    return float(value)


def check_approval_timeout(value: float) -> float:
    """Seconds a close call waits for a person: at least one."""
    if not is_number(value) or float(value) < 1:
        raise ConfigError(f"approval_timeout must be a number of seconds >= 1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PromotionPolicy:
    """The rule and its thresholds, validated once (ConfigError naming the parameter)."""

    policy: Policy = DEFAULT_POLICY
    alpha: float = DEFAULT_ALPHA
    min_delta: float = 0.0
    min_accuracy: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        check_alpha(self.alpha)
        if not is_number(self.min_delta) or float(self.min_delta) < 0:
            raise ConfigError(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")
        check_min_accuracy(self.min_accuracy)

    def describe(self) -> str:
        if self.policy == "significant":
            return f"significant (McNemar p < {self.alpha:g})"
        return "better" + (f" (min_delta {self.min_delta:g})" if self.min_delta else "")


@dataclass(frozen=True)
class Verdict:
    """What the policy decided: promote or not, whether it was a close call, and why."""

    policy: str
    promoted: bool
    close_call: bool
    guardrail: str | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "promoted": self.promoted,
            "close_call": self.close_call,
            "guardrail": self.guardrail,
            "sentence": self.sentence,
        }


def first_model(rule: PromotionPolicy, version: str, accuracy: float) -> Verdict:
    """No champion yet: the newcomer becomes champion unless it is below the floor."""
    if accuracy < rule.min_accuracy:
        return Verdict(
            rule.policy,
            False,
            False,
            "min_accuracy",
            f"{version} (accuracy {accuracy:.4f}) is below min_accuracy "
            f"{rule.min_accuracy:g}: no champion yet",
        )
    sentence = f"first model: {version} (accuracy {accuracy:.4f}) becomes champion"
    return Verdict(rule.policy, True, False, None, sentence)


def judge(rule: PromotionPolicy, evidence: Evidence, recent: Evidence | None = None) -> Verdict:
    """The verdict of `rule` on the paired `evidence` (and the recent data's, if any)."""
    refused = _guardrail(rule, evidence, recent)
    head = (
        f"{rule.describe()}: {evidence.newcomer} ({evidence.newcomer_accuracy:.4f}) vs champion "
        f"{evidence.champion} ({evidence.champion_accuracy:.4f}) on {evidence.data}, "
        f"McNemar p = {evidence.p_value:.3g}"
    )
    if refused is not None:
        name, why = refused
        return Verdict(
            rule.policy, False, False, name, f"{head}: refused, {why}; stays a challenger"
        )
    significant = evidence.newcomer_ahead and evidence.p_value < rule.alpha
    if rule.policy == "significant":
        promoted = significant
    else:
        needed = evidence.champion_accuracy + rule.min_delta
        promoted = evidence.newcomer_accuracy >= needed - TOLERANCE
    near = _near_guardrail(rule, evidence, recent)
    grey = (evidence.newcomer_ahead and not significant) or (promoted and near is not None)
    if promoted:
        outcome = "promoted"
    elif rule.policy == "significant" and evidence.newcomer_ahead:
        outcome = f"stays a challenger (ahead, but not significantly: p >= {rule.alpha:g})"
    else:
        outcome = "stays a challenger"
    note = f" (close call: {near})" if near is not None and promoted else ""
    return Verdict(rule.policy, promoted, grey, None, f"{head}: {outcome}{note}")


def _guardrail(
    rule: PromotionPolicy, evidence: Evidence, recent: Evidence | None
) -> tuple[str, str] | None:
    """The guardrail that refuses the newcomer, named, with its numbers; None if none does."""
    if evidence.newcomer_accuracy < rule.min_accuracy:
        return "min_accuracy", (
            f"accuracy {evidence.newcomer_accuracy:.4f} is below min_accuracy {rule.min_accuracy:g}"
        )
    for where, data in (("", evidence), (" on the recent data", recent)):
        if data is None:
            continue
        lost = data.refused_classes()
        if lost:
            worst = min(lost, key=lambda item: item.p_drop)
            return "class_recall", (
                f"digit {worst.digit} lost recall{where}: {worst.champion:.4f} -> "
                f"{worst.newcomer:.4f} ({100 * worst.difference:+.1f} points, "
                f"p = {worst.p_drop:.2g} < 0.001)"
            )
    if recent is not None and not recent.newcomer_ahead and recent.p_value < rule.alpha:
        return "recent_data", (
            f"significantly worse on the recent data {recent.data} "
            f"({recent.newcomer_accuracy:.4f} vs {recent.champion_accuracy:.4f}, "
            f"p = {recent.p_value:.3g})"
        )
    return None


def _near_guardrail(
    rule: PromotionPolicy, evidence: Evidence, recent: Evidence | None
) -> str | None:
    """Why a passing newcomer is close to a guardrail, or None."""
    if rule.min_accuracy and evidence.newcomer_accuracy < rule.min_accuracy + FLOOR_MARGIN:
        return f"accuracy within {FLOOR_MARGIN:g} of min_accuracy {rule.min_accuracy:g}"
    for where, data in (("", evidence), (" on the recent data", recent)):
        near = [] if data is None else data.near_classes()
        if near:
            worst = min(near, key=lambda item: item.p_drop)
            return (
                f"digit {worst.digit} recall {100 * worst.difference:+.1f} points{where}, "
                f"p = {worst.p_drop:.2g}"
            )
    return None


def every_policy(
    evidence: Evidence, recent: Evidence | None = None, **thresholds: Any
) -> dict[str, Verdict]:
    """The verdict under each policy (for `models compare`), with the same thresholds."""
    return {name: judge(PromotionPolicy(name, **thresholds), evidence, recent) for name in POLICIES}
