"""`mnistnn automations apply` without a server: settings, the YAML file, refusals; and events."""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows import events
from flows.automations import (
    AUTOMATIONS_YAML,
    PREFECT_YAML,
    heartbeat_interval,
    notify_kind,
    render,
    settings,
)
from mnistnn.errors import MnistnnError
from tests.registry.conftest import register

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "5f0c8a52-6a5e-4c1f-9d0e-2a7b6f1c3d4e"


def offline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mnistnn ARGS` with no Prefect server configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect-home"))
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_defaults_follow_the_deployments_heartbeat() -> None:
    checked = settings("https://hooks.example.com/T0/B0/x")
    assert checked.heartbeat == heartbeat_interval() == 30
    assert (checked.zombie_after, checked.stale_after) == (90, 26 * 3600)
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    for deployment in spec["deployments"]:  # every run of every deployment sends heartbeats
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
        assert "mnistnn" in deployment["tags"]  # what the flow-run automations match


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/hook", "webhook"),
        ("https://hooks.slack.com/services/T0/B0/XYZ", "webhook"),
        ("mailto://alerts:secret@example.com", "apprise"),
        ("json://alerts.example.com/hook", "apprise"),
    ],
)
def test_notify_kinds(url: str, kind: str) -> None:
    assert notify_kind(url) == kind


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "--notify 'not a url': neither an http(s) webhook nor a URL apprise knows"),
        ("nosuch://x/y", "--notify nosuch://x/...: neither an http(s) webhook nor a URL apprise"),
        ("https:///path", "an http(s) URL needs a host"),
    ],
)
def test_bad_urls_are_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(MnistnnError) as raised:
        notify_kind(url)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_zombie_threshold_below_two_heartbeats_is_refused() -> None:
    with pytest.raises(MnistnnError) as raised:
        settings("http://127.0.0.1/hook", zombie_after=59)
    assert str(raised.value).startswith("--zombie-after 59: must be at least 2 heartbeat")
    assert settings("http://127.0.0.1/hook", zombie_after=60).zombie_after == 60


def _prefect_yaml(tmp_path: Path, *envs: dict[str, str]) -> Path:
    deployments = [
        {"name": f"d{i}", "work_pool": {"name": "p", "job_variables": {"env": env}}}
        for i, env in enumerate(envs)
    ]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({"deployments": deployments}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("envs", "message"),
    [
        (({"X": "1"},), "deployment(s) d0 set no PREFECT_FLOWS_HEARTBEAT_FREQUENCY"),
        (({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}, {}), "deployment(s) d1 set no"),
        (
            (
                {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
                {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"},
            ),
            "different PREFECT_FLOWS_HEARTBEAT_FREQUENCY values (d0=30, d1=60)",
        ),
        (({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "10"},), "'10': must be a whole number"),
    ],
)
def test_heartbeat_settings_are_checked(
    tmp_path: Path, envs: tuple[dict[str, str], ...], message: str
) -> None:
    with pytest.raises(MnistnnError) as raised:
        heartbeat_interval(_prefect_yaml(tmp_path, *envs))
    assert str(raised.value).startswith(f"{tmp_path / 'prefect.yaml'}: ")
    assert message in str(raised.value)


def test_rendered_automations_are_valid_prefect_automations() -> None:
    from prefect.events.schemas.automations import AutomationCore
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomation

    checked = settings("http://127.0.0.1/hook", zombie_after=75, stale_after=600)
    rendered = render(checked.values(BLOCK))
    assert "${" not in str(rendered)
    by_name = {spec["name"]: spec for spec in rendered}
    assert len(by_name) == len(rendered) == 9
    for spec in rendered:
        AutomationCore.model_validate(copy.deepcopy(spec))
        # the server's model also checks every Jinja template
        ServerAutomation.model_validate(copy.deepcopy(spec))
    zombie = by_name["mnistnn-crash-zombie-runs"]["trigger"]
    assert (zombie["within"], zombie["posture"], zombie["for_each"]) == (
        75,
        "Proactive",
        ["prefect.resource.id"],
    )
    # a terminal state closes a run's window (Prefect issue 21932: no false Crashed)
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed"} <= set(zombie["expect"])
    [crash] = by_name["mnistnn-crash-zombie-runs"]["actions"]
    assert (crash["state"], crash["force"]) == ("CRASHED", False)
    rerun = by_name["mnistnn-rerun-crashed"]["trigger"]
    assert rerun["match"]["prefect.run-count"] == ["1", "2"]
    assert by_name["mnistnn-notify-stale"]["trigger"]["within"] == 600
    notifications = [a for s in rendered for a in s["actions"] if a["type"] == "send-notification"]
    assert len(notifications) == 7
    assert {a["block_document_id"] for a in notifications} == {BLOCK}


def test_unknown_placeholder_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "automations.yaml"
    source.write_text("automations:\n  - name: x\n    description: ${nope}\n", encoding="utf-8")
    with pytest.raises(MnistnnError, match=r"automations.yaml: unknown value \$\{nope\}"):
        render({"zombie_after": 1}, source)
    assert AUTOMATIONS_YAML.name == "automations.yaml"


def test_cli_refuses_a_bad_url_before_anything(tmp_path: Path) -> None:
    done = offline(tmp_path, "automations", "apply", "--notify", "nosuch://x/y")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("mnistnn: error: --notify nosuch://x/...: neither")


def test_cli_without_a_server_says_so_in_one_line(tmp_path: Path) -> None:
    done = offline(tmp_path, "automations", "apply", "--notify", "http://127.0.0.1:9/hook")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mnistnn: error: no Prefect server at PREFECT_API_URL: nothing applied"
    ]


def test_promote_without_a_server_says_once_events_not_sent(tmp_path: Path) -> None:
    from mnistnn.registry.store import ModelRegistry

    registry = ModelRegistry(tmp_path / "data" / "models")
    register(registry, seed=1, accuracy=0.9)
    register(registry, seed=2, accuracy=0.8)
    done = offline(tmp_path, "--data-dir", str(tmp_path / "data"), "models", "promote", "v0002")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "champion is now v0002"
    assert done.stderr.count(events.NO_SERVER) == 1
    assert registry.champion().version == "v0002"  # type: ignore[union-attr]


def _decision(**changes: Any) -> dict[str, Any]:
    decision = {
        "promoted": True,
        "version": "v0002",
        "accuracy": 0.95,
        "champion_version": "v0001",
        "champion_accuracy": 0.94,
        "min_delta": 0.0,
        "reason": "v0002 0.9500 >= champion v0001 0.9400 + 0: promoted",
    }
    return {**decision, **changes}


def test_decision_events() -> None:
    promoted = events.decision_events(_decision())
    assert [name for name, _, _ in promoted] == [events.MODEL_REGISTERED, events.MODEL_PROMOTED]
    _, resource, payload = promoted[1]
    assert resource["prefect.resource.id"] == "mnistnn.model.v0002"
    assert payload == {
        "old_version": "v0001",
        "old_accuracy": 0.94,
        "new_version": "v0002",
        "new_accuracy": 0.95,
        "reason": _decision()["reason"],
        "by": "run",
    }
    kept = events.decision_events(_decision(promoted=False))
    assert [name for name, _, _ in kept] == [events.MODEL_REGISTERED]
    assert events.decision_events(_decision(reason="already registered as v0002 (then: x)")) == []


def test_readme_command_parses_and_needs_a_server(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [line] = [ln for ln in readme.splitlines() if ln.startswith(".venv/bin/mnistnn automations")]
    args = shlex.split(line)[1:]
    assert args[:3] == ["automations", "apply", "--notify"]
    done = offline(tmp_path, *args)  # the URL is accepted; then there is no server
    assert done.returncode == 1
    assert "no Prefect server at PREFECT_API_URL" in done.stderr
