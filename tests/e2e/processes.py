"""The one helper for the e2e tests' processes: free ports, start in a new session, stop by PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def readme_commands(section: str) -> list[str]:
    """The commands of the first bash block under README.md's `## section` (or `### section`),
    one per line, comments dropped: the tests run what the README tells a user to run."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"^#+ {re.escape(section)}\n(.*?)^```bash\n(.*?)^```", text, re.M | re.S)
    assert found, f"README.md has no bash block under {section!r}"
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in found.group(2).splitlines())
    return [line for line in lines if line]


def readme_command(section: str, containing: str) -> str:
    """The one command of that block containing `containing`."""
    [command] = [line for line in readme_commands(section) if containing in line]
    return command


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path = REPO,
    log: IO[bytes] | None = None,
    **options: Any,
) -> subprocess.Popen[Any]:
    """Start `args` in its own session (so `stop` can end it and all its children)."""
    output = subprocess.DEVNULL if log is None else log
    options.setdefault("stdout", output)
    options.setdefault("stderr", subprocess.STDOUT if log is not None else subprocess.DEVNULL)
    return subprocess.Popen(list(args), cwd=cwd, env=dict(env), start_new_session=True, **options)


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Send `sig` to the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def train_command(data_dir: Path, train_csv: Path, test_csv: Path, *extra: str) -> list[str]:
    """`mnistnn --data-dir D train --train-csv T --test-csv V ... --json`."""
    return [
        str(BIN / "mnistnn"),
        "--data-dir",
        str(data_dir),
        "train",
        "--train-csv",
        str(train_csv),
        "--test-csv",
        str(test_csv),
        *extra,
        "--json",
    ]


@contextmanager
def dask_cluster(env: Mapping[str, str], workers: int = 1) -> Iterator[str]:
    """A `dask scheduler` and `workers` one-thread `dask worker` processes on loopback."""
    port = free_port()
    env = {**env, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    address = f"tcp://127.0.0.1:{port}"
    scheduler = spawn(
        [
            str(BIN / "dask"),
            "scheduler",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
    )
    worker = spawn(
        [
            *(str(BIN / "dask"), "worker", address, "--no-dashboard", "--host", "127.0.0.1"),
            *("--nworkers", str(workers), "--nthreads", "1"),
        ],
        env,
    )
    try:
        yield address
    finally:
        stop(worker)
        stop(scheduler)
