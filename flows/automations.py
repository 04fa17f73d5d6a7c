"""The automations of deployments/automations.yaml, rendered for one server's settings.

The YAML file is the single source: Prefect's own automation schema with a few `${name}` values
(thresholds, the notification block's id) that `render` fills in. The heartbeat interval the
liveness rule assumes is read from the deployments' job variables in prefect.yaml, so the two
cannot drift apart. `flows.automations_apply` puts the result on a server.
"""

from __future__ import annotations

import re
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mnistnn.errors import MnistnnError

DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deployments"
AUTOMATIONS_YAML = DEPLOYMENTS / "automations.yaml"
PREFECT_YAML = DEPLOYMENTS / "prefect.yaml"
HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
#: Prefect refuses heartbeat intervals under 30 s.
MIN_HEARTBEAT = 30
#: The liveness rule waits this many heartbeat intervals by default, and never fewer than two.
ZOMBIE_INTERVALS, MIN_ZOMBIE_INTERVALS = 3, 2
DEFAULT_STALE_AFTER = 26 * 3600
MAX_RERUNS = 2
BLOCK_NAME = "mnistnn-notify"
_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True)
class Settings:
    """What `automations apply` was given, checked."""

    notify: str
    zombie_after: int
    stale_after: int
    heartbeat: int

    def values(self, block_id: str) -> dict[str, Any]:
        """The `${name}` values of the YAML file."""
        reruns = list(range(1, MAX_RERUNS + 1))
        return {
            "zombie_after": self.zombie_after,
            "stale_after": self.stale_after,
            "heartbeat": self.heartbeat,
            "notify_block": block_id,
            "max_reruns": MAX_RERUNS,
            "rerun_counts": [str(n) for n in reruns],
            "rerun_range": reruns,
            "recovered_counts": [str(n + 1) for n in reruns],
        }


def heartbeat_interval(prefect_yaml: Path = PREFECT_YAML) -> int:
    """The heartbeat interval (s) every deployment of prefect.yaml sets; one value for all."""
    spec = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))
    found: dict[str, str | None] = {}
    for deployment in spec.get("deployments") or []:
        env = ((deployment.get("work_pool") or {}).get("job_variables") or {}).get("env") or {}
        found[deployment["name"]] = env.get(HEARTBEAT_VARIABLE)
    missing = sorted(name for name, value in found.items() if value is None)
    if missing or not found:
        raise MnistnnError(
            f"{prefect_yaml}: deployment(s) {', '.join(missing) or '(none)'} set no "
            f"{HEARTBEAT_VARIABLE} in work_pool.job_variables.env"
        )
    values = set(found.values())
    if len(values) != 1:
        raise MnistnnError(
            f"{prefect_yaml}: the deployments set different {HEARTBEAT_VARIABLE} values "
            f"({', '.join(f'{k}={v}' for k, v in sorted(found.items()))}); use one"
        )
    value = str(values.pop())
    if not value.isdigit() or int(value) < MIN_HEARTBEAT:
        raise MnistnnError(
            f"{prefect_yaml}: {HEARTBEAT_VARIABLE}={value!r}: must be a whole number of "
            f"seconds, at least {MIN_HEARTBEAT} (Prefect's minimum)"
        )
    return int(value)


def notify_kind(url: str) -> str:
    """ "webhook" for an http(s) URL, "apprise" for another URL apprise knows; else one line."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in {"http", "https"}:
        if not parsed.hostname:
            raise MnistnnError(f"--notify {shown(url)}: an http(s) URL needs a host")
        return "webhook"
    with warnings.catch_warnings():  # apprise's plugins import the deprecated imghdr
        warnings.simplefilter("ignore", DeprecationWarning)
        from apprise import Apprise

        known = bool(parsed.scheme) and Apprise().add(url)
    if known:
        return "apprise"
    raise MnistnnError(
        f"--notify {shown(url)}: neither an http(s) webhook nor a URL apprise knows "
        "(slack://, msteams://, mailto://, ... see the apprise documentation)"
    )


def shown(url: str) -> str:
    """The URL without what may be a secret (path, query, credentials): scheme and host."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.scheme:
        return repr(url[:40])
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}/..." if parsed.path.strip("/") else url


def settings(
    notify: str,
    zombie_after: int | None = None,
    stale_after: int | None = None,
    prefect_yaml: Path = PREFECT_YAML,
) -> Settings:
    """Check the options against each other and prefect.yaml (one line naming the problem)."""
    notify_kind(notify)
    heartbeat = heartbeat_interval(prefect_yaml)
    zombie = ZOMBIE_INTERVALS * heartbeat if zombie_after is None else zombie_after
    if zombie < MIN_ZOMBIE_INTERVALS * heartbeat:
        raise MnistnnError(
            f"--zombie-after {zombie}: must be at least {MIN_ZOMBIE_INTERVALS} heartbeat "
            f"intervals ({MIN_ZOMBIE_INTERVALS} x {heartbeat} s, {HEARTBEAT_VARIABLE} in "
            f"{prefect_yaml.name}), or a live run that misses one beat is marked Crashed"
        )
    stale = DEFAULT_STALE_AFTER if stale_after is None else stale_after
    if stale <= 0:
        raise MnistnnError(f"--stale-after {stale}: must be a positive number of seconds")
    return Settings(notify, zombie, stale, heartbeat)


def render(values: dict[str, Any], source: Path = AUTOMATIONS_YAML) -> list[dict[str, Any]]:
    """The automations of `source` with every `${name}` replaced (a whole-value `${name}` takes
    the value itself: a number, a list; inside text it becomes its text)."""
    spec = yaml.safe_load(source.read_text(encoding="utf-8"))
    automations = spec.get("automations") if isinstance(spec, dict) else None
    if not isinstance(automations, list) or not automations:
        raise MnistnnError(f"{source}: no `automations:` list")
    return [_fill(automation, values, source) for automation in automations]


def _fill(node: Any, values: dict[str, Any], source: Path) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, values, source) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values, source) for value in node]
    if not isinstance(node, str):
        return node

    def value_of(name: str) -> Any:
        if name not in values:
            raise MnistnnError(f"{source}: unknown value ${{{name}}} (known: {sorted(values)})")
        return values[name]

    whole = _PLACEHOLDER.fullmatch(node.strip())
    if whole:
        return value_of(whole.group(1))
    return _PLACEHOLDER.sub(lambda found: str(value_of(found.group(1))), node)


__all__ = [
    "AUTOMATIONS_YAML",
    "BLOCK_NAME",
    "PREFECT_YAML",
    "Settings",
    "heartbeat_interval",
    "notify_kind",
    "render",
    "settings",
    "shown",
]
