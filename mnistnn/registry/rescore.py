"""The accuracy rule of `register` without an `assess`: the champion scored on the same test data.

When the test data changed since the champion was scored, the caller's `rescore` scores it on the
new data first, and that score is recorded in the champion's `meta.json` (`scores`, accuracy by
test-data sha256) so it is computed only once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mnistnn.errors import RegistryError
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.files import RegistryFiles
from mnistnn.registry.promotion import ChampionScore, decide
from mnistnn.registry.records import ModelVersion, PromotionDecision, checked_accuracy

log = logging.getLogger(__name__)


class AccuracyRule:
    """The `better` rule on accuracies alone (no predictions): the library's old path."""

    def __init__(
        self,
        registry: RegistryFiles,
        accuracy: float,
        test_sha256: str,
        margin: float,
        rescore: Callable[[NeuralNetwork], float] | None,
    ) -> None:
        self.registry, self.accuracy, self.test_sha256 = registry, accuracy, test_sha256
        self.margin, self.rescore = margin, rescore
        self.scores: dict[str, ChampionScore] = {}  # a re-score stays marked as one

    def score(self, champion: ModelVersion) -> ChampionScore:
        """The champion's accuracy on this test data, re-scoring (and recording) it if needed."""
        if champion.version not in self.scores:
            self.scores[champion.version] = self._score(champion)
        return self.scores[champion.version]

    def __call__(self, version: str, champion: ModelVersion | None) -> PromotionDecision:
        score = None if champion is None else self.score(champion)
        return decide(version, self.accuracy, score, self.margin)

    def _score(self, champion: ModelVersion) -> ChampionScore:
        known = champion.scores.get(self.test_sha256)
        if known is not None:
            return ChampionScore(champion.version, known, rescored=False)
        if self.rescore is None:
            raise RegistryError(
                f"champion {champion.version} was scored on other test data (sha256 "
                f"{champion.test_sha256[:12]}…, now {self.test_sha256[:12]}…) and no rescore was "
                "given: pass rescore= so both are compared on the same data; nothing was registered"
            )
        files = self.registry
        value = self.rescore(files.load_network(files.read_meta(champion.version)))
        accuracy = checked_accuracy(value, f"rescore({champion.version})")

        def add(raw: dict[str, Any]) -> None:
            raw["scores"] = {**raw.get("scores", {}), self.test_sha256: accuracy}

        files.update_meta(champion.version, add)
        log.info(
            "re-scored champion %s on test data %s…: %.4f",
            champion.version,
            self.test_sha256[:12],
            accuracy,
        )
        return ChampionScore(champion.version, accuracy, rescored=True)
