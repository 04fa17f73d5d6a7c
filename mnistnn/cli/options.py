"""Command-line options derived from the parameter declaration (`mnistnn.parameters`).

Each declared parameter becomes one option: its flag, its type (Literal values as choices,
bools as `--x/--no-x`), its description and default as help. argparse only converts the text
(`--epochs x` is a usage error); the declaration's checks run once, in `parse`, before any server
starts (`--epochs 0` fails in one line naming `epochs`).
"""

from __future__ import annotations

import argparse
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from mnistnn.parameters import Parameters, fields, flag_of, help_text

_METAVARS: dict[type, str] = {int: "N", float: "X"}


def add_options(
    parser: argparse.ArgumentParser, model: type[Parameters], *, skip: tuple[str, ...] = ()
) -> None:
    """One option per parameter of `model` (the global `--data-dir` excepted); each defaults
    to None, which `parse` reads as "the declared default" (for network fields: the preset)."""
    for _, name, field in fields(model):
        flag = flag_of(field, name)
        if flag.name is None or flag.global_option or name in skip:
            continue
        base, choices = _base_type(field.annotation)
        text = help_text(name, field)
        if base is bool:
            parser.add_argument(
                flag.name,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
            continue
        parser.add_argument(
            flag.name,
            dest=name,
            type=base,
            choices=choices,
            default=None,
            metavar=None if choices else _METAVARS.get(base, "PATH"),
            help=text,
        )


def values(args: argparse.Namespace, model: type[Parameters]) -> dict[str, Any]:
    """The parameters given on the command line (None: not given), by flat name."""
    found: dict[str, Any] = {}
    for _, name, field in fields(model):
        flag = flag_of(field, name)
        dest = flag.name.lstrip("-").replace("-", "_") if flag.global_option and flag.name else name
        if hasattr(args, dest):
            found[name] = getattr(args, dest)
    return found


def _base_type(annotation: Any) -> tuple[type, list[Any] | None]:
    """The argparse type of an annotation: `int` of `Annotated[int, ...] | None`, `str` with
    choices of a Literal."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _base_type(inner[0])
    if origin is Annotated:
        return _base_type(get_args(annotation)[0])
    if origin is Literal:  # choices of one type: ("legacy", "default") or (1, 2)
        choices = list(get_args(annotation))
        return type(choices[0]), choices
    assert isinstance(annotation, type), annotation
    return annotation, None
