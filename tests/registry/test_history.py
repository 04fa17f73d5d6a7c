"""The champion's history: every change logged in order, compacted into segments, never lost."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from mnistnn.errors import RegistryError
from mnistnn.registry import log
from mnistnn.registry.store import ModelRegistry
from tests.registry.conftest import register


def test_every_change_is_logged_in_order_with_actor_and_reason(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90, flow_run_id="run-1")
    register(registry, 2, 0.80, flow_run_id="run-2")  # stays a challenger: logged all the same
    registry.promote("v0002", reason="the new digits matter more", actor="ana")
    registry.rollback(reason="complaints", actor="bo")
    entries = registry.history()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert [(e["action"], e["version"], e["champion"], e["decision"]) for e in entries] == [
        ("register", "v0001", "v0001", "promoted"),
        ("register", "v0002", "v0001", "challenger"),
        ("promote", "v0002", "v0002", "promote"),
        ("rollback", "v0001", "v0001", "rollback"),
    ]
    assert [e["actor"] for e in entries] == ["run-1", "run-2", "ana", "bo"]
    assert entries[2]["reason"].endswith(": the new digits matter more")
    assert entries[3]["reason"].endswith(": complaints")
    assert all(e["at"] for e in entries)


def test_an_answer_is_logged_and_promotes_only_when_approved(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    register(registry, 2, 0.89)
    register(registry, 3, 0.88)
    timed_out = registry.answer("v0002", approved=None, actor="nobody", compared_with="v0001")
    assert not timed_out.promoted and timed_out.approval["decision"] == "timed-out"
    rejected = registry.answer(
        "v0002", approved=False, actor="ana", comment="no", compared_with="v0001"
    )
    assert not rejected.promoted
    approved = registry.answer(
        "v0003", approved=True, actor="bo", comment="fine by me", compared_with="v0001"
    )
    assert approved.promoted and approved.approval["by"] == "bo"
    assert approved.approval["comment"] == "fine by me"
    assert registry.champion().version == "v0003"
    assert registry.get("v0003").decision.approval["decision"] == "approved"
    # an approval about a champion that has changed since does not promote
    late = registry.answer("v0002", approved=True, actor="cy", compared_with="v0001")
    assert not late.promoted and registry.champion().version == "v0003"
    last = registry.history()[-1]
    assert (last["action"], last["actor"], last["decision"]) == ("approval", "cy", "approved")
    assert "the champion is now v0003" in last["reason"]
    assert registry.rollback().version == "v0001"  # the approval was a champion change


@pytest.fixture
def compacted(local_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """A registry of 14 history entries, segments of 3: 9 in three segments, 5 in the tail."""
    monkeypatch.setattr(log, "SEGMENT", 3)
    register(local_registry, 1, 0.90)
    register(local_registry, 2, 0.95)
    for _ in range(6):
        local_registry.rollback()
        local_registry.promote("v0002")
    return local_registry


def test_the_log_is_compacted_into_segments_and_reads_back_whole(
    compacted: ModelRegistry,
) -> None:
    local_registry = compacted
    data = json.loads(local_registry.store.read_bytes("registry.json"))
    assert data["compacted"] == 9 and len(data["history"]) == 5  # a tail shorter than 2 * 3
    assert local_registry.store.list("log/") == [
        "log/00000001.json",
        "log/00000004.json",
        "log/00000007.json",
    ]
    entries = local_registry.history()
    assert [e["seq"] for e in entries] == list(range(1, 15))
    assert [e["action"] for e in entries][:4] == ["register", "register", "rollback", "promote"]
    assert local_registry.rollback().version == "v0001"  # the stack survives the compaction
    local_registry.store.delete("log/00000004.json")
    with pytest.raises(RegistryError, match="history segments are missing entries"):
        local_registry.history()
    with pytest.raises(RegistryError, match="history segments are missing entries"):
        local_registry.history(last=10)  # its entries 5-6 are in the missing segment


def test_the_newest_entries_read_only_the_segments_that_hold_them(
    compacted: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_registry = compacted
    whole = local_registry.history()
    read: list[str] = []
    listed: list[str] = []
    store = local_registry.store
    read_bytes, list_keys = store.read_bytes, store.list
    monkeypatch.setattr(store, "read_bytes", lambda key: read.append(key) or read_bytes(key))
    monkeypatch.setattr(store, "list", lambda prefix="": listed.append(prefix) or list_keys(prefix))
    assert local_registry.history(last=5) == whole[-5:]  # registry.json's tail alone
    assert [key for key in read if key.startswith("log/")] == [] and listed == []
    assert local_registry.history(last=7) == whole[-7:]  # seq 8-14: one segment and the tail
    assert [key for key in read if key.startswith("log/")] == ["log/00000007.json"]
    assert listed == []
    assert local_registry.history(last=100) == whole


def test_racing_promotions_lose_no_history_entry(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    register(registry, 2, 0.80)
    errors: list[BaseException] = []

    def flip(name: str) -> None:
        mine = ModelRegistry(registry.store if not registry.is_local else registry.root)
        try:
            for index in range(5):
                mine.promote("v0002" if index % 2 == 0 else "v0001", actor=name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(f"writer-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    entries = registry.history()
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    # each promote either changed the champion (one entry) or found it in place (none)
    changes = [e for e in entries if e["action"] == "promote"]
    assert all(e["champion"] != e["previous"] for e in changes)
    assert all(a["champion"] == b["previous"] for a, b in itertools.pairwise(entries))
    assert entries[-1]["champion"] == registry.champion().version
