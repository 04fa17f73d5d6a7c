"""`mnistnn models`: list, show (in words), compare, history, promote and roll back versions."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from mnistnn.cli.app import EXIT_OK, positive_int
from mnistnn.cli.provenance import describe_version, show_lines
from mnistnn.config import DataPaths

#: Versions `models list` shows besides the champion (its cost stays flat as versions pile up).
LAST = 20
#: Newest history entries `models history` shows (`--all`: every one, read from every segment).
HISTORY = 50


def add_models(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `models` command and its subcommands."""
    models = commands.add_parser("models", help="list, show, compare, promote or roll back models")
    sub = models.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="the champion and the newest versions")
    listing.add_argument(
        "--last", type=positive_int, default=LAST, help=f"newest versions shown (default {LAST})"
    )
    listing.add_argument("--all", action="store_true", help="every registered version")
    show = sub.add_parser("show", help="one version in words: data, settings, scores, decision")
    show.add_argument("version")
    show.add_argument("--json", action="store_true")
    compare = sub.add_parser(
        "compare", help="the evidence between two versions and the verdict under each policy"
    )
    compare.add_argument("champion", metavar="A", help="the version to compare against")
    compare.add_argument("newcomer", metavar="B", help="the version that would replace A")
    compare.add_argument("--test-csv", default=None, help="labelled CSV (default: the test set)")
    compare.add_argument("--min-accuracy", type=float, default=0.0)
    compare.add_argument("--alpha", type=float, default=None)
    compare.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="the newest champion changes and decisions")
    history.add_argument(
        "--last", type=positive_int, default=HISTORY, help=f"newest entries (default {HISTORY})"
    )
    history.add_argument("--all", action="store_true", help="every entry, from the first")
    history.add_argument("--json", action="store_true")
    promote = sub.add_parser("promote", help="make a version the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", default=None, help="why (kept in the history)")
    rollback = sub.add_parser("rollback", help="return to the previous champion")
    rollback.add_argument("--reason", default=None, help="why (kept in the history)")
    models.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """Registry commands; the champion is marked `*` and named in words."""
    from mnistnn.registry.store import ModelRegistry

    paths = DataPaths.at(args.data_dir)
    registry = ModelRegistry(paths.models)
    command = args.models_command
    if command == "list":
        _list(registry, None if args.all else args.last)
    elif command == "show":
        described = describe_version(registry, args.version, paths)
        print(json.dumps(described, indent=2) if args.json else "\n".join(show_lines(described)))
    elif command == "compare":
        _compare(args, registry, paths)
    elif command == "history":
        _history(registry.history(None if args.all else args.last), args.json)
    elif command == "promote":
        version = registry.promote(args.version, reason=args.reason, actor=getpass.getuser())
        print(f"champion is now {version.version}")
    else:
        version = registry.rollback(reason=args.reason, actor=getpass.getuser())
        print(f"champion is now {version.version}")
    return EXIT_OK


def _list(registry: Any, last: int | None) -> None:
    versions, left_out = (registry.versions(), 0) if last is None else registry.newest(last)
    if not versions:
        print("no models registered yet: run `mnistnn train` first")
    for version in versions:
        mark, role = ("*", "champion  ") if version.is_champion else (" ", "challenger")
        print(
            f"{mark} {version.version}  {role}  accuracy {version.accuracy:.4f}  "
            f"{version.created}  hidden {version.config.get('hidden_nodes')}  "
            f"lr {version.config.get('learning_rate')}"
        )
    if left_out:
        print(f"  ... {left_out} older versions not shown (--all lists every one)")


def _compare(args: argparse.Namespace, registry: Any, paths: DataPaths) -> None:
    """Both versions on the labelled data, the evidence, and each policy's verdict."""
    from mnistnn.data.remote import ingest_location as ingest_csv
    from mnistnn.registry.from_run import labelled
    from mnistnn.registry.gate import compare_versions
    from mnistnn.registry.policy import DEFAULT_ALPHA, every_policy
    from mnistnn.report.promotion import evidence_lines

    summary = ingest_csv(args.test_csv or paths.test_csv, paths.processed)
    data = labelled(summary.parquet, summary.source_name)
    evidence = compare_versions(registry, args.champion, args.newcomer, data)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    verdicts = every_policy(evidence, alpha=alpha, min_accuracy=args.min_accuracy)
    if args.json:
        out = {
            "evidence": evidence.to_dict(),
            "verdicts": {name: verdict.to_dict() for name, verdict in verdicts.items()},
        }
        print(json.dumps(out, indent=2))
        return
    print("\n".join(evidence_lines(evidence.to_dict())))
    for name, verdict in verdicts.items():
        mark = "promote" if verdict.promoted else "refuse "
        grey = "  (close call)" if verdict.close_call else ""
        print(f"{name:<12} {mark}  {verdict.sentence}{grey}")


def _history(entries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        print("no history yet: no model has been registered")
    elif entries[0]["seq"] > 1:
        print(f"  ... {entries[0]['seq'] - 1} older entries not shown (--all shows every one)")
    for entry in entries:
        actor = entry.get("actor") or "-"
        print(
            f"{entry['seq']:>4}  {entry['at']}  {entry['action']:<8}  "
            f"{entry.get('version') or entry['champion']}  champion {entry['champion'] or '-'}  "
            f"by {actor}: {entry['reason']}"
        )
