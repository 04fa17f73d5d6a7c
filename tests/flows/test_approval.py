"""A close call with a person: the flow run pauses; an answer through Prefect's API decides it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from flows import events
from flows import training as flow_module
from flows.cli.main import main
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.records import RunResult
from tests.conftest import write_mnist_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_flow(small_csvs: tuple[Path, Path], data_dir: Path, **overrides: Any) -> RunResult:
    params: dict[str, Any] = {
        "train_csv": str(small_csvs[0]),
        "test_csv": str(small_csvs[1]),
        "hidden_nodes": 20,
        "epochs": 1,
        "data_dir": str(data_dir),
        "publish_report": False,
        # any gain is "not significant" at this alpha: every newcomer ahead is a close call
        "policy": "significant",
        "alpha": 1e-9,
    }
    params.update(overrides)
    return flow_module.train_pipeline(**params)


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def paused_run(known: set[UUID], timeout: float = 120.0) -> UUID:
    """The id of a flow run, not in `known`, that the server shows Paused."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(limit=50):
                if run.id not in known and run.state is not None and run.state.is_paused():
                    return run.id
            time.sleep(0.5)
    raise AssertionError("no flow run paused for a person")


def test_a_close_call_waits_then_a_timeout_or_an_approval_decides(
    small_csvs, tmp_path, mnist_train, capsys, monkeypatch
) -> None:
    sent: list[tuple[str, dict[str, str]]] = []

    def queue(name: str, resource: dict[str, str], payload: object) -> bool:
        sent.append((name, resource))
        return True  # queued, as events.emit says

    monkeypatch.setattr(events, "emit", queue)
    first = run_flow(small_csvs, tmp_path)
    assert first.decision["promoted"]  # the first model becomes champion, as before
    registry = ModelRegistry(tmp_path / "models")

    # nobody answers: the newcomer stays a challenger
    late = run_flow(small_csvs, tmp_path, epochs=2, approval="ask", approval_timeout=3)
    decision = late.decision
    assert decision["close_call"] and not decision["promoted"]
    assert decision["approval"]["decision"] == "timed-out"
    assert registry.champion().version == "v0001"
    # (the registry's own events, registered and promoted, are sent beside it)
    assert [event for event in sent if event[0].startswith("mnistnn.promotion.")] == [
        (
            "mnistnn.promotion.waiting",
            {"prefect.resource.id": "mnistnn.model.v0002", "prefect.resource.name": "v0002"},
        )
    ]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(late.flow_run_id)).state
    assert state is not None and state.is_completed(), state

    # a person approves through the API: promoted, with who and why in the history (this
    # newcomer also learnt from an inbox batch, which `models show` names)
    (tmp_path / "incoming").mkdir()
    write_mnist_csv(tmp_path / "incoming" / "batch-a.csv", *[a[2000:2400] for a in mnist_train])
    with get_client(sync_client=True) as client:
        known = {run.id for run in client.read_flow_runs(limit=50)}
    thread, out = in_thread(
        lambda: run_flow(small_csvs, tmp_path, epochs=2, seed=7, approval="ask", settle_seconds=0.0)
    )
    flow_run_id = paused_run(known)
    resume_flow_run(flow_run_id, run_input={"decision": "approve", "by": "ana", "comment": "ok"})
    thread.join(timeout=120)
    assert out, "the flow run did not finish after it was resumed"
    decision = out[0].decision
    assert decision["promoted"] and decision["approval"]["by"] == "ana"
    assert registry.champion().version == "v0003"
    entries = registry.history()
    assert [(e["action"], e["decision"]) for e in entries] == [
        ("register", "promoted"),
        ("register", "challenger"),
        ("approval", "timed-out"),
        ("register", "challenger"),
        ("approval", "approved"),
    ]
    assert (entries[-1]["actor"], entries[-1]["champion"]) == ("ana", "v0003")
    assert entries[-1]["reason"].endswith("approved by ana: ok")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    assert state is not None and state.is_completed(), state
    assert main(["--data-dir", str(tmp_path), "models", "show", "v0003"]) == 0
    shown = capsys.readouterr().out
    assert "  base  train_2000.csv.gz: 2000 rows" in shown
    assert "  batch batch-a.csv: " in shown and "held out as recent data" in shown
    assert "close call approved by ana" in shown
