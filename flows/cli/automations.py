"""`mnistnn automations apply`, and `models promote`/`rollback` that also announce the change.

The library's `models` command never imports Prefect; here its handler is wrapped so that a
champion change by hand emits `mnistnn.model.promoted` / `mnistnn.model.rolled-back` like a run's.
"""

from __future__ import annotations

import argparse
import sys

from flows import events
from mnistnn.cli import models as model_commands
from mnistnn.cli.app import EXIT_OK, positive_int
from mnistnn.config import DataPaths


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """automations apply; and the models command's handler, wrapped (after library's)."""
    group = commands.add_parser("automations", help="liveness, recovery and alerts on the server")
    actions = group.add_subparsers(dest="automations_command", required=True)
    apply = actions.add_parser(
        "apply",
        help="create or update the notification block and deployments/automations.yaml",
    )
    apply.add_argument(
        "--notify", required=True, metavar="URL", help="http(s) webhook or apprise URL"
    )
    apply.add_argument(
        "--zombie-after",
        type=positive_int,
        default=None,
        metavar="SECONDS",
        help="mark a run Crashed after this long without a heartbeat (3 heartbeats: 90)",
    )
    apply.add_argument(
        "--stale-after",
        type=positive_int,
        default=None,
        metavar="SECONDS",
        help="alert when no nightly-retrain completed for this long (93600: 26 h)",
    )
    apply.add_argument("--dry-run", action="store_true", help="print what would change")
    group.set_defaults(handler=cmd_automations)
    models = commands.choices.get("models")
    if models is not None:
        models.set_defaults(handler=cmd_models)


def cmd_automations(args: argparse.Namespace) -> int:
    """Check every option, then apply; one line per block or automation."""
    from flows.automations import settings
    from flows.automations_apply import apply

    checked = settings(args.notify, args.zombie_after, args.stale_after)
    outcome = apply(checked, dry_run=args.dry_run)
    for line in outcome.lines:
        print(f"{'would be ' if args.dry_run and not line.startswith('unchanged') else ''}{line}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    """The library's models command; a champion change is then sent as a Prefect event."""
    if args.models_command not in {"promote", "rollback"}:
        return model_commands.cmd_models(args)
    from mnistnn.registry.store import ModelRegistry

    registry = ModelRegistry(DataPaths.at(args.data_dir).models)
    before = registry.champion()
    code = model_commands.cmd_models(args)
    after = registry.champion()
    if after is None or (before is not None and before.version == after.version):
        return code
    old = (None, None) if before is None else (before.version, before.accuracy)
    event = events.MODEL_PROMOTED if args.models_command == "promote" else events.MODEL_ROLLED_BACK
    # the registry's own words for the change (its history's last entry), else ours
    last = (registry.history() or [{}])[-1]
    verb = "manual promotion" if args.models_command == "promote" else "rollback"
    reason = str(last.get("reason") or f"{verb}: {after.version} replaces champion {old[0]}")
    if events.server_available() is None:
        print(events.NO_SERVER, file=sys.stderr)
        return code
    events.emit(*events.champion_change(event, old, (after.version, after.accuracy), reason, "cli"))
    events.flush()
    return code


__all__ = ["add_commands", "cmd_automations", "cmd_models"]
