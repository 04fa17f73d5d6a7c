"""The Prefect API a CLI run talks to: one already reachable, or a temporary server of our own.

Order: `PREFECT_API_URL` (environment or Prefect profile; also a test harness) is used as it is;
else a server answering `GET http://127.0.0.1:4200/api/health` within 0.3 s (`make ui`) is used,
unless `MNISTNN_PREFECT_AUTODETECT=0`; else a temporary server is started on a free loopback
port, exactly as Prefect's own ephemeral mode starts it (uvicorn over
`prefect.server.api.server:create_app`, UI off), with two differences: on Linux it gets
`PR_SET_PDEATHSIG(SIGTERM)`, so it dies with the CLI even after `kill -9`, and the CLI stops it
itself (SIGTERM is turned into an interrupt, so the flow run is marked Crashed first).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

AUTODETECT_ENV = "MNISTNN_PREFECT_AUTODETECT"
UI_DEFAULT = "http://127.0.0.1:4200"
#: Where the running CLI writes its temporary server's PID (the e2e test reads it).
SERVER_PID_ENV = "MNISTNN_SERVER_PID_FILE"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Api:
    """The API in use, its UI, and whether this process started (and will stop) it."""

    api_url: str
    ui_url: str
    started: bool
    pid: int | None = None

    def run_link(self, flow_run_id: object) -> str:
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"


def healthy(api_url: str, timeout: float = 0.3) -> bool:
    """True when `<api_url>/health` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _ui_of(api_url: str) -> str:
    configured = os.environ.get("PREFECT_UI_URL")
    if configured:
        return configured.rstrip("/")
    return api_url.rstrip("/").removesuffix("/api")


@contextlib.contextmanager
def prefect_api(startup_timeout: float = 120.0) -> Iterator[Api]:
    """Use the configured or a detected server, or run a temporary one for the block."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured:
        yield Api(configured, _ui_of(configured), started=False)
        return
    detected = f"{UI_DEFAULT}/api"
    if os.environ.get(AUTODETECT_ENV, "1") != "0" and healthy(detected):
        with temporary_settings(updates={PREFECT_API_URL: detected}):
            yield Api(detected, UI_DEFAULT, started=False)
        return
    process, api_url = _start(startup_timeout)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}), _sigterm_interrupts():
            yield Api(api_url, _ui_of(api_url), started=True, pid=process.pid)
    finally:
        _drain_prefect_workers()
        _stop(process)


def _drain_prefect_workers() -> None:
    """Send the logs and events still queued while the server is up (else they are lost)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the thread that spawned it dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _command(port: int) -> list[str]:
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--log-level", "error", "--lifespan", "on"),
    ]


def _start(timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    deadline = time.monotonic() + timeout
    while True:
        port = _free_port()
        process = subprocess.Popen(
            _command(port),
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _record_pid(process.pid)
        api_url = f"http://127.0.0.1:{port}/api"
        while process.poll() is None and time.monotonic() < deadline:
            if healthy(api_url, timeout=1.0):
                return process, api_url
            time.sleep(0.1)
        code = process.poll()
        if code == 3 and time.monotonic() < deadline:  # the port was taken meanwhile: again
            continue
        _stop(process)
        raise RuntimeError(
            f"temporary Prefect server on port {port} "
            + (f"exited with {code}" if code is not None else f"not healthy after {timeout:g} s")
        )


def _record_pid(pid: int) -> None:
    target = os.environ.get(SERVER_PID_ENV)
    if target:
        Path(target).write_text(f"{pid}\n", encoding="utf-8")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread: the flow run is marked Crashed and
    the `finally` blocks (our server's stop) run, as with Ctrl-C.

    While a flow runs, Prefect's own handler takes SIGTERM (it marks the run Crashed, and a run
    the signal left Failed is corrected by the flows' hook, `flows.crashes`); outside one, this
    handler records the run in context, if any, and sets it Crashed on the way out.
    """
    from prefect.context import FlowRunContext

    from flows.crashes import SIGNAL_MESSAGE, mark_crashed, terminated

    interrupted: list[str] = []

    def interrupt(signum: int, frame: FrameType | None) -> Any:
        context = FlowRunContext.get()
        if context is not None and context.flow_run is not None:
            interrupted.append(str(context.flow_run.id))
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    except Exception as exc:
        if interrupted or terminated(exc):  # the error only hides the signal: exit 130
            raise KeyboardInterrupt("signal 15") from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        for flow_run_id in interrupted:
            mark_crashed(flow_run_id, SIGNAL_MESSAGE, replace_failed=True)


RUN_ID_FILE = "flow_run.json"


def claim_run_folder(folder: str | os.PathLike[str], flow_run_id: object) -> str | None:
    """Record this flow run as the one working in `folder` (a path or URL); if the run recorded
    before it is not in a final state (its process was killed: nobody else holds the folder's
    lock or lease), mark it Crashed. Returns the id of the run so marked, or None."""

    from flows.crashes import mark_crashed
    from mnistnn.core import locations
    from mnistnn.runs.folders import read_json

    path = locations.join(folder, RUN_ID_FILE)
    previous = (read_json(path) or {}).get("flow_run_id")
    marked = None
    if previous and str(previous) != str(flow_run_id):
        marked = mark_crashed(str(previous))
    if flow_run_id is not None:
        record = {"flow_run_id": str(flow_run_id), "pid": os.getpid()}
        locations.write_json(path, record)
    return marked
