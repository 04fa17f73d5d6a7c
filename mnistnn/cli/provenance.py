"""`models show`: where a version came from (its data by name and rows), its scores, decision."""

from __future__ import annotations

import json
import os
from typing import Any

from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.data.snapshot import read_manifest
from mnistnn.errors import DataError
from mnistnn.registry.store import ModelRegistry


def describe_version(registry: ModelRegistry, version: str, paths: DataPaths) -> dict[str, Any]:
    """The fields of `models show` (its `--json`); the words are `show_lines`'."""
    model = registry.get(version)
    decision = model.decision
    evidence = (decision.evidence or {}) if decision else {}
    return {
        "version": model.version,
        "role": "champion" if model.is_champion else "challenger",
        "created": model.created,
        "data": _training_data(model.run_dir, model.train_sha256, paths),
        "test_sha256": model.test_sha256,
        "config": model.config,
        "scores": {
            "accuracy": model.accuracy,
            "confident": model.confident,
            "mse": model.metrics.get("mse"),
        },
        "decision": None
        if decision is None
        else {
            "promoted": decision.promoted,
            "policy": decision.policy,
            "reason": decision.reason,
            "guardrail": decision.guardrail,
            "close_call": decision.close_call,
            "p_value": evidence.get("p_value"),
            "table": evidence.get("table"),
            "approval": decision.approval,
        },
        "run_dir": model.run_dir,
        "flow_run_id": model.flow_run_id,
        "flow_run_url": _flow_run_url(model.flow_run_id),
    }


def show_lines(info: dict[str, Any]) -> list[str]:
    """`describe_version`'s fields in words."""
    lines = [f"{info['version']} ({info['role']}), registered {info['created']}", "trained on:"]
    for member in info["data"]:
        extra = (
            f", {member['recent_rows']} held out as recent data" if member["recent_rows"] else ""
        )
        lines.append(f"  {member['role']:<5} {member['name']}: {member['train_rows']} rows{extra}")
    config = info["config"]
    lines.append(
        "configuration: "
        + ", ".join(f"{key} {config[key]}" for key in sorted(config) if config[key] is not None)
    )
    scores = info["scores"]
    confident = "-" if scores["confident"] is None else f"{scores['confident']:.4f}"
    lines.append(f"scores: accuracy {scores['accuracy']:.4f}, confident {confident}")
    decision = info["decision"]
    if decision is not None:
        outcome = "promoted" if decision["promoted"] else "not promoted"
        lines.append(f"decision ({decision['policy']}): {outcome}: {decision['reason']}")
        if decision["table"]:
            table = decision["table"]
            lines.append(
                f"  evidence: both right {table['both_right']}, only champion "
                f"{table['only_champion']}, only newcomer {table['only_newcomer']}, both wrong "
                f"{table['both_wrong']}; McNemar p = {decision['p_value']:.3g}"
            )
        if decision["guardrail"]:
            lines.append(f"  decided by the guardrail {decision['guardrail']}")
        if decision["approval"]:
            answer = decision["approval"]
            lines.append(
                f"  close call {answer['decision']} by {answer['by']} at {answer['at']}: "
                f"{answer.get('comment') or '(no comment)'}"
            )
    source = info["flow_run_url"] or info["flow_run_id"] or "not from a flow run"
    lines.append(f"from: {source} (run folder {info['run_dir']})")
    return lines


def _training_data(
    run_dir: str | None, train_sha256: str, paths: DataPaths
) -> list[dict[str, Any]]:
    """The base file and each inbox batch, by name and rows, from the run's snapshot manifest."""
    manifest = None
    if run_dir is not None:
        try:
            run = json.loads(locations.read_bytes(locations.join(run_dir, "run.json")))
            manifest = (run.get("snapshot") or {}).get("manifest")
        except (OSError, ValueError):
            manifest = None  # the run folder is gone: only the base file's hash is known
    if manifest is None:
        name = _source_name(paths.processed, train_sha256[:16])
        return [
            {
                "role": "base",
                "name": name,
                "sha256": train_sha256,
                "rows": None,
                "train_rows": _rows(paths.processed, train_sha256[:16]),
                "recent_rows": 0,
            }
        ]
    snapshot = read_manifest(manifest)
    return [
        {
            "role": member.role,
            "name": _source_name(snapshot.processed, member.parquet.removesuffix(".parquet")),
            "sha256": member.sha256,
            "rows": member.rows,
            "train_rows": member.train_rows,
            "recent_rows": member.recent_rows,
        }
        for member in snapshot.members
    ]


def _summary(processed: Any, stem: str) -> dict[str, Any] | None:
    try:
        data = json.loads(locations.read_bytes(locations.join(processed, f"{stem}.json")))
    except (OSError, ValueError, DataError):
        return None
    return data if isinstance(data, dict) else None


def _source_name(processed: Any, stem: str) -> str:
    summary = _summary(processed, stem)
    return str(summary["source_name"]) if summary and "source_name" in summary else f"{stem}…"


def _rows(processed: Any, stem: str) -> int | None:
    summary = _summary(processed, stem)
    return int(summary["rows_accepted"]) if summary and "rows_accepted" in summary else None


def _flow_run_url(flow_run_id: str | None) -> str | None:
    """The flow run's page in the Prefect UI, when the UI's address is known from the env."""
    if flow_run_id is None:
        return None
    ui = os.environ.get("PREFECT_UI_URL") or os.environ.get("PREFECT_API_URL", "").removesuffix(
        "/api"
    )
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None
