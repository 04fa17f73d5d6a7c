"""Model registry: every completed run becomes a numbered version; one version is the champion.

Layout under the registry root (`DataPaths().models`: `data/models` or `s3://bucket/x/models`):

    registry.json           versions list, champion pointer, the newest history entries
    log/00000001.json       older history entries, 50 per immutable segment (mnistnn.registry.log)
    index/ab.json           the weights index, 256 shards (mnistnn.registry.weights_index)
    v0001/weights.npz       the weights (`checkpoint.save_weights` format, never pickle)
    v0001/meta.json         config, data hashes, metrics, created time, flow run id, decision
    .lock                   (local folders only) `fcntl.flock` target that serialises writers

`registry.json` is the commit point: a version's files are written first, then the registry,
so a crash leaves at worst an unregistered version, never a half-written registry. Every
write goes through the `Store` (whole or absent) and every change of registry.json is one
compare-and-swap, `Store.update` (bounded, jittered; `If-Match` on S3): the registry is re-read
and the change (the promotion decision included) recomputed on a conflict. A version number is
taken by a conditional *create* of its `weights.npz`, so two writers (on two machines) never
share one. In a local folder every writer also holds the flock, so there the CAS never
conflicts. Readers take no lock: they only ever see a whole old or a whole new `registry.json`,
and it names only versions whose files are complete. Every change is logged with its actor.

Promotion is fair: the newcomer is compared with the champion *on the same test data* (matched
by sha256). The caller's `assess` compares both models' predictions (mnistnn.registry.gate);
without it the old rule applies to accuracies: when the test data changed since the champion was
scored, `rescore` scores the champion on the new data first, and that score is recorded in the
champion's `meta.json` (`scores`, accuracy by test-data sha256) so it is computed only once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from mnistnn.core.files import sha256_bytes
from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.files import (
    DEFAULT_LOCK_TIMEOUT,
    LOCK_FILE,
    META_FILE,
    REGISTRY_FILE,
    WEIGHTS_FILE,
    RegistryFiles,
    Unchanged,
    number_of,
)
from mnistnn.registry.log import RegistryState, read_history
from mnistnn.registry.promotion import check_min_delta
from mnistnn.registry.records import (
    ModelVersion,
    PromotionDecision,
    VersionMeta,
    check_sha,
    checked_metrics,
    now_utc,
)
from mnistnn.registry.rescore import AccuracyRule

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_FILE", "META_FILE", "REGISTRY_FILE", "WEIGHTS_FILE"]
__all__ += ["Assess", "ModelRegistry"]

log = logging.getLogger(__name__)

#: Decides a newcomer (its version name) against the champion (None: there is none).
Assess = Callable[[str, ModelVersion | None], PromotionDecision]
_NO_MODEL = "no model trained yet: run `mnistnn train` first"


class ModelRegistry(RegistryFiles):
    """The versions under one root (a local folder or `s3://bucket/prefix`); safe to use from
    several processes, on several machines, at once."""

    # -- writing ---------------------------------------------------------------------------------
    def register(
        self,
        network: NeuralNetwork,
        *,
        metrics: Mapping[str, Any],
        test_sha256: str,
        train_sha256: str,
        run_dir: str | os.PathLike[str] | None = None,
        flow_run_id: str | None = None,
        min_delta: float = 0.0,
        rescore: Callable[[NeuralNetwork], float] | None = None,
        assess: Assess | None = None,
        actor: str | None = None,
    ) -> PromotionDecision:
        """Save `network` as a new version and decide whether it is champion, in one commit.

        `metrics["accuracy"]` is its accuracy on the test data whose sha256 is `test_sha256`.
        Idempotent on the weights' sha256: registering the same weights again (a flow re-run)
        creates nothing and returns the decision recorded the first time. With `assess`, it
        decides (against each champion the commit meets). Without it, the accuracy rule: when a
        champion exists but was never scored on this test data, `rescore(champion_network)` must
        give its accuracy on it; without `rescore` a RegistryError is raised and nothing is
        written, because comparing accuracies on different test sets would be unfair.
        """
        clean_metrics = checked_metrics(metrics)
        check_sha("test_sha256", test_sha256)
        check_sha("train_sha256", train_sha256)
        margin = check_min_delta(min_delta)
        data = weights_bytes(network)
        digest = sha256_bytes(data)
        rule = AccuracyRule(self, float(clean_metrics["accuracy"]), test_sha256, margin, rescore)
        judge = assess or rule
        found: list[PromotionDecision] = []  # the decision committed
        with self._locked():
            state = self._read_state()
            existing = self._find_meta(state, digest)
            if existing is not None:
                return self._recorded_decision(existing)
            champion = self._champion_version(state)
            if assess is None and champion is not None:  # refuse before any write
                rule.score(champion)
            version = self._claim_version(state, data)
            record = {
                "version": version,
                "created": now_utc(),
                "config": network.config.to_dict(),
                "metrics": clean_metrics,
                "test_sha256": test_sha256,
                "train_sha256": train_sha256,
                "run_dir": None if run_dir is None else os.fspath(run_dir),
                "flow_run_id": flow_run_id,
                "weights_sha256": digest,
                "scores": {test_sha256: float(clean_metrics["accuracy"])},
            }

            self.transact(lambda now: self._add(now, record, judge, actor or flow_run_id, found))
        log.info("registered %s in %s: %s", found[0].version, self.root, found[0].reason)
        return found[0]

    def promote(
        self, version: str, *, reason: str | None = None, actor: str | None = None
    ) -> ModelVersion:
        """Make `version` the champion by hand (logged with `reason`, undone by `rollback`)."""

        def change(state: RegistryState) -> None:
            self._require_known(state, version)
            if state.champion == version:
                log.info("%s is already the champion; nothing to do", version)
                raise Unchanged
            why = f"manual promotion: {version} replaces champion {state.champion}"
            state.change_champion(version, "promote", _with(why, reason), actor)

        with self._locked():
            state = self.transact(change)
        return self._model_version(version, state)

    def rollback(self, *, reason: str | None = None, actor: str | None = None) -> ModelVersion:
        """Undo the last champion change: the champion before it is champion again.

        Repeated rollbacks walk further back (the history is a stack of champion changes, and
        each rollback pops one); RegistryError when there is no earlier champion.
        """
        where = self.where(REGISTRY_FILE)

        def change(state: RegistryState) -> None:
            stack = state.stack(where)
            if len(stack) < 2:
                raise RegistryError(
                    f"{where}: no previous champion to roll back to "
                    f"(champion: {state.champion or 'none'})"
                )
            why = f"rollback: {stack[-2]} replaces champion {state.champion}"
            state.change_champion(stack[-2], "rollback", _with(why, reason), actor)

        with self._locked():
            state = self.transact(change)
        assert state.champion is not None  # a rollback always leaves a champion
        log.info(state.history[-1]["reason"])
        return self._model_version(state.champion, state)

    def answer(
        self,
        version: str,
        *,
        approved: bool | None,
        actor: str,
        comment: str = "",
        compared_with: str | None = None,
    ) -> PromotionDecision:
        """Record a person's answer to a close call on `version` (None: nobody answered in time).

        Approved, `version` becomes champion if the champion is still `compared_with` (the one
        the evidence was about); otherwise, or rejected, or unanswered, it stays a challenger.
        The answer (who, when, the comment) goes into the history and the version's meta.json.
        """
        at = now_utc()
        outcome = {True: "approved", False: "rejected", None: "timed-out"}[approved]
        answer = {"decision": outcome, "by": actor, "at": at, "comment": comment}
        promoted: list[bool] = []

        def change(state: RegistryState) -> None:
            self._require_known(state, version)
            stale = compared_with is not None and state.champion != compared_with
            win = bool(approved) and not stale and state.champion != version
            promoted[:] = [win]
            why = f"close call on {version} {outcome} by {actor}" + (
                f": {comment}" if comment else ""
            )
            if approved and stale:
                why += f" (not promoted: the champion is now {state.champion})"
            champion = version if win else state.champion
            state.append(
                "approval", version, champion=champion, reason=why, actor=actor, decision=outcome
            )

        with self._locked():
            self.transact(change)

            def record(raw: dict[str, Any]) -> None:
                raw["decision"] = {**raw["decision"], "approval": answer}
                raw["decision"]["promoted"] = promoted[0]

            self.update_meta(version, record)
        return self.read_meta(version).decision

    # -- reading ---------------------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first (empty when there is no registry yet)."""
        state = self._read_state()
        return [self._model_version(version, state) for version in state.versions]

    def names(self) -> list[str]:
        """Every registered version's name, oldest first (registry.json alone: no meta.json)."""
        return list(self._read_state().versions)

    def newest(self, count: int) -> tuple[list[ModelVersion], int]:
        """The newest `count` versions and the champion (oldest first), and how many are left
        out: what `models list` shows, reading that many meta.json however long the history."""
        state = self._read_state()
        shown = state.versions[-count:] if count > 0 else []
        if state.champion is not None and state.champion not in shown:
            shown = [state.champion, *shown]
        return [self._model_version(v, state) for v in shown], len(state.versions) - len(shown)

    def challenger(self, champion: str) -> ModelVersion | None:
        """The newest version registered after `champion` that lost its promotion (reading
        meta.json newest first: one read when the newest version is that loser)."""
        return self._challenger(self._read_state(), champion)

    def pinned(self) -> tuple[ModelVersion | None, ModelVersion | None]:
        """The champion and its `challenger`, from one read of registry.json (what scoring
        pins); (None, None) when nothing is registered."""
        state = self._read_state()
        champion = self._champion_version(state)
        if champion is None:
            return None, None
        return champion, self._challenger(state, champion.version)

    def _challenger(self, state: RegistryState, champion: str) -> ModelVersion | None:
        self._require_known(state, champion)
        for name in reversed(state.versions[state.versions.index(champion) + 1 :]):
            version = self._model_version(name, state)
            if version.decision is not None and not version.decision.promoted:
                return version
        return None

    def get(self, version: str) -> ModelVersion:
        """One version; RegistryError listing the known versions when it is not registered."""
        state = self._read_state()
        self._require_known(state, version)
        return self._model_version(version, state)

    def champion(self) -> ModelVersion | None:
        """The current champion, or None when nothing has been registered."""
        return self._champion_version(self._read_state())

    def history(self, last: int | None = None) -> list[dict[str, Any]]:
        """Every register, promote, rollback and approval (or the newest `last`), oldest first
        (see registry.log); entries are numbered (`seq`) from 1."""
        return read_history(self.store, self._read_state(), str(self.root), last)

    def load(self, version: str | None = None) -> NeuralNetwork:
        """The network of `version` (None: the champion), its weights' sha256 verified."""
        state = self._read_state()
        if version is None:
            if state.champion is None:
                raise RegistryError(f"{_NO_MODEL} (the registry {self.root} is empty)")
            version = state.champion
        self._require_known(state, version)
        return self.load_network(self.read_meta(version))

    def find_by_weights(self, weights_sha256: str) -> ModelVersion | None:
        """The registered version whose weights have this sha256, if any."""
        state = self._read_state()
        record = self._find_meta(state, weights_sha256)
        return None if record is None else self._view(record, state)

    # -- internals -------------------------------------------------------------------------------
    def _add(
        self,
        state: RegistryState,
        record: dict[str, Any],
        judge: Assess,
        actor: str | None,
        found: list[PromotionDecision],
    ) -> None:
        """The registry change of `register`: a new version, decided against `state`'s champion."""
        found.clear()
        existing = self._find_meta(state, record["weights_sha256"])
        if existing is not None:  # the same weights registered concurrently
            found.append(self._recorded_decision(existing))
            raise Unchanged
        version = record["version"]
        decision = judge(version, self._champion_version(state))
        found.append(decision)
        self._write_meta(version, {**record, "decision": decision.to_dict()})
        self._index_weights(state, version, record["weights_sha256"])
        state.versions = sorted([*state.versions, version], key=number_of)
        state.append(
            "register",
            version,
            champion=version if decision.promoted else state.champion,
            reason=decision.reason,
            actor=actor,
            decision="promoted" if decision.promoted else "challenger",
        )

    def _champion_version(self, state: RegistryState) -> ModelVersion | None:
        return None if state.champion is None else self._model_version(state.champion, state)

    def _recorded_decision(self, meta: VersionMeta) -> PromotionDecision:
        """The first registration's decision, returned again for an identical re-registration."""
        log.info(
            "weights %s… are already registered as %s; returning its recorded decision",
            meta.weights_sha256[:12],
            meta.version,
        )
        return meta.decision


def _with(reason: str, given: str | None) -> str:
    """The registry's reason, with the person's own after it when one was given."""
    return reason if not given else f"{reason}: {given}"
