"""The promotion gate: both models' predictions on the same digits -> evidence -> a decision.

`Gate` is the registry's `assess` for a newcomer: for each champion the commit meets it predicts
the test digits (and the recent ones, when there are any) with both models, builds the paired
`Evidence`, and lets the policy judge. With `ask` a close call is not promoted automatically:
its decision says it waits for a person (`ModelRegistry.answer` records the answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.evidence import Evidence, compare_predictions
from mnistnn.registry.policy import PromotionPolicy, Verdict, first_model, judge
from mnistnn.registry.records import ModelVersion, PromotionDecision
from mnistnn.registry.store import ModelRegistry
from mnistnn.types import IntArray, PixelArray

WAITS = "waits for a person (approval=ask)"


@dataclass(frozen=True)
class Labelled:
    """Labelled digits to compare the models on, named for messages ("mnist_test.csv")."""

    name: str
    pixels: PixelArray
    labels: IntArray


@dataclass
class Gate:
    """The registry's `assess` for one newcomer (see the module docstring)."""

    registry: ModelRegistry
    newcomer: NeuralNetwork
    data: Labelled
    rule: PromotionPolicy = field(default_factory=PromotionPolicy)
    recent: Labelled | None = None
    ask: bool = False
    _seen: dict[str, tuple[Evidence, Evidence | None]] = field(default_factory=dict)

    def __call__(self, version: str, champion: ModelVersion | None) -> PromotionDecision:
        if champion is None:
            mine = self.newcomer.predict(self.data.pixels)
            accuracy = float(np.mean(mine == self.data.labels))
            verdict = first_model(self.rule, version, accuracy)
            return _decision(version, accuracy, verdict, self.rule, None, None, ask=False)
        evidence, recent = self.evidence(version, champion.version)
        verdict = judge(self.rule, evidence, recent)
        return _decision(
            version, evidence.newcomer_accuracy, verdict, self.rule, evidence, recent, self.ask
        )

    def evidence(self, version: str, champion: str) -> tuple[Evidence, Evidence | None]:
        """The paired evidence against `champion` (computed once per champion)."""
        if champion not in self._seen:
            network = self.registry.load(champion)
            main = _compare(network, self.newcomer, self.data, champion, version)
            recent = None
            if self.recent is not None:
                recent = _compare(network, self.newcomer, self.recent, champion, version)
            self._seen[champion] = (main, recent)
        return self._seen[champion]


def compare_versions(
    registry: ModelRegistry, champion: str, newcomer: str, data: Labelled
) -> Evidence:
    """The evidence of two registered versions on `data` (the registry is not changed)."""
    return _compare(registry.load(champion), registry.load(newcomer), data, champion, newcomer)


def _compare(
    champion: NeuralNetwork, newcomer: NeuralNetwork, data: Labelled, old: str, new: str
) -> Evidence:
    return compare_predictions(
        data.labels,
        champion.predict(data.pixels),
        newcomer.predict(data.pixels),
        champion=old,
        newcomer=new,
        data=data.name,
    )


def _decision(
    version: str,
    accuracy: float,
    verdict: Verdict,
    rule: PromotionPolicy,
    evidence: Evidence | None,
    recent: Evidence | None,
    ask: bool,
) -> PromotionDecision:
    waits = ask and verdict.close_call
    return PromotionDecision(
        promoted=verdict.promoted and not waits,
        version=version,
        accuracy=accuracy,
        champion_version=None if evidence is None else evidence.champion,
        champion_accuracy=None if evidence is None else evidence.champion_accuracy,
        min_delta=rule.min_delta,
        reason=verdict.sentence + (f"; {WAITS}" if waits else ""),
        policy=rule.policy,
        guardrail=verdict.guardrail,
        close_call=verdict.close_call,
        evidence=None if evidence is None else evidence.to_dict(),
        recent_evidence=None if recent is None else recent.to_dict(),
    )
