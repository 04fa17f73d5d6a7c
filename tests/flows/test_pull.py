"""The deployments' pull step: a flow run starts in MNISTNN_HOME or the worker's own checkout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows import pull
from tests.e2e.processes import REPO


@pytest.fixture(autouse=True)
def _keep_cwd() -> Iterator[None]:
    before = Path.cwd()
    try:
        yield
    finally:
        os.chdir(before)


def test_without_mnistnn_home_the_run_starts_in_the_installed_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNISTNN_HOME", raising=False)
    os.chdir(tmp_path)  # where Prefect starts a process worker's flow run
    assert pull.run_in_checkout() == {"directory": str(REPO)}
    assert Path.cwd() == REPO


def test_mnistnn_home_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "training.py").touch()
    (tmp_path / "pyproject.toml").touch()
    monkeypatch.setenv("MNISTNN_HOME", str(tmp_path))
    assert pull.run_in_checkout() == {"directory": str(tmp_path.resolve())}
    assert Path.cwd() == tmp_path.resolve()


def test_a_wrong_mnistnn_home_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNISTNN_HOME", str(tmp_path))
    with pytest.raises(pull.NoCheckoutError) as info:
        pull.run_in_checkout()
    message = str(info.value)
    assert message.startswith(f"MNISTNN_HOME={tmp_path} is not a checkout of mnistnn")
    assert "\n" not in message


def test_an_installed_copy_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNISTNN_HOME", raising=False)
    monkeypatch.setattr(pull, "__file__", str(tmp_path / "site-packages" / "flows" / "pull.py"))
    with pytest.raises(pull.NoCheckoutError, match="not from a checkout: set MNISTNN_HOME"):
        pull.run_in_checkout()


def test_every_deployment_pulls_with_it() -> None:
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["pull"] == [{"flows.pull.run_in_checkout": {}}]
    assert all("pull" not in deployment for deployment in spec["deployments"])
