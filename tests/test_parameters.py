"""The parameter declaration and everything derived from it: CLI options, flow schemas, checks,
recorded settings. Each declared parameter must reach every derived place."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from flows.cli.main import main
from mnistnn.errors import ConfigError
from mnistnn.parameters import (
    Parameters,
    ScoringParameters,
    TrainingParameters,
    WatchParameters,
    fields,
    flag_of,
    flat,
    parse,
)
from mnistnn.report.markdown import markdown_report
from mnistnn.runs.records import DataLineage, RunLineage

#: Each declaration, the CLI command derived from it and the flow derived from it.
DERIVED = [
    (TrainingParameters, "train", "flows.training:train_pipeline"),
    (ScoringParameters, "score", "flows.scoring:batch_predict"),
    (WatchParameters, "watch", "flows.watch:watch_inbox"),
]


def names(model: type[Parameters]) -> list[str]:
    return [name for _, name, _ in fields(model)]


def subparser(command: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `mnistnn` parser and the parser of one of its commands."""
    from flows.cli.main import parser as mnistnn_parser

    parser = mnistnn_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, commands.choices[command]


def option_strings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize(("model", "command", "entrypoint"), DERIVED)
def test_every_parameter_is_a_cli_option(
    model: type[Parameters], command: str, entrypoint: str
) -> None:
    parser, sub = subparser(command)
    everywhere = {**option_strings(parser), **option_strings(sub)}
    for _, name, field in fields(model):
        flag = flag_of(field, name)
        assert flag.name in everywhere, f"{name}: no {flag.name} option on `mnistnn {command}`"
        action = everywhere[flag.name]
        assert action.help, f"{flag.name} has no help"
        if not flag.global_option:
            assert action.dest == name and action.default is None


def test_cli_keeps_the_documented_flag_names() -> None:
    _, sub = subparser("train")
    options = option_strings(sub)
    for flag in ("--hidden", "--lr", "--epochs", "--batch-size", "--incoming", "--min-delta"):
        assert flag in options
    assert options["--hidden"].dest == "hidden_nodes"
    assert options["--dtype"].choices == ["float64", "float32"]


@pytest.mark.parametrize(("model", "command", "entrypoint"), DERIVED)
def test_every_parameter_is_in_the_flow_schema_typed_and_described(
    model: type[Parameters], command: str, entrypoint: str
) -> None:
    import importlib

    from prefect.utilities.callables import parameter_schema

    module, name = entrypoint.split(":")
    flow = getattr(importlib.import_module(module), name)
    schema = parameter_schema(flow.fn).model_dump()
    properties = schema["properties"]
    assert list(properties) == names(model)
    for parameter, spec in properties.items():
        assert spec.get("description"), f"{parameter}: no description in the UI form"
        assert "type" in spec or "anyOf" in spec, f"{parameter}: untyped in the UI form"
    if model is TrainingParameters:
        assert {"enum": ["reference", "best"], "type": "string"} in properties["preset"]["anyOf"]
        assert {"minimum": 1, "type": "integer"} in properties["hidden_nodes"]["anyOf"]
        assert properties["hidden_nodes"]["default"] is None  # the preset decides
        assert "best 800" in properties["hidden_nodes"]["description"]


def test_every_parameter_is_recorded_in_the_settings_and_the_report() -> None:
    params = parse(TrainingParameters, {"preset": "best", "hidden_nodes": 100})
    recorded = flat(params)
    assert list(recorded) == names(TrainingParameters)
    lineage = DataLineage("train", "t.csv", "ab" * 32, 1, 1, 0)
    record = RunLineage(lineage, lineage, parameters=recorded).to_dict()
    assert record["parameters"] == recorded
    markdown = markdown_report(
        title="t",
        config={},
        history=[],
        lineage=[lineage],
        precision=[],
        recall=[],
        figures={},
        comparison=None,
        run_dir="r",
        parameters=recorded,
    )
    section = markdown.split("## Run parameters", 1)[1].split("## Data lineage", 1)[0]
    for name in names(TrainingParameters):
        assert f"| {name} |" in section, f"{name} missing from the report's parameters"


def test_preset_wins_unless_a_value_is_given() -> None:
    best = parse(TrainingParameters, {"preset": "best"}).network.resolve()
    assert best.config.hidden_nodes == 800 and best.epochs == 250
    mixed = parse(TrainingParameters, {"preset": "best", "hidden_nodes": 100}).network.resolve()
    assert mixed.config.hidden_nodes == 100
    assert mixed.config.momentum == 0.9 and mixed.config.output == "softmax"
    assert mixed.overrides == ("hidden_nodes",)
    # None is "not given" (what a deployment's form sends for an empty field)
    empty = parse(TrainingParameters, {"preset": "best", "hidden_nodes": None})
    assert empty.network.resolve().config.hidden_nodes == 800


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"hidden_nodes": True}, "hidden_nodes: input should be a valid integer, got True"),
        ({"min_delta": -1.0}, "min_delta must be a finite number >= 0, got -1.0"),
        ({"max_rejected_fraction": "0.1"}, "max_rejected_fraction: input should be a valid"),
        ({"preset": "fast"}, "preset must be one of 'reference' or 'best'; got 'fast'"),
        ({"hidden": 100}, "unknown parameter(s): hidden"),
        ({"schedule_epochs": 0, "preset": "best"}, "schedule_epochs must be >= 1, got 0"),
        ({"seed": 2**32}, "seed must be < 4294967296, got 4294967296"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_parameter(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(TrainingParameters, values)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_scoring_and_watch_use_the_library_checks() -> None:
    with pytest.raises(ConfigError, match="^threshold must be a number in 0..1, got 1.5$"):
        parse(ScoringParameters, {"threshold": 1.5})
    with pytest.raises(ConfigError, match="^challenger must be a version such as v0002"):
        parse(ScoringParameters, {"challenger": "best"})
    with pytest.raises(ConfigError, match="^drift_threshold must be a number in 0..1"):
        parse(WatchParameters, {"drift_threshold": 2.0})
    assert parse(ScoringParameters, {"threshold": 1}).scoring.threshold == 1.0


def test_train_help_shows_each_preset_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "hidden nodes (reference 88, best 800)" in out
    assert "--min-delta X margin (>= 0)" in out


def test_threads_from_the_cli_as_an_integer_choice() -> None:
    _, sub = subparser("train")
    args = sub.parse_args(["--threads", "1"])
    assert args.threads == 1
    assert parse(TrainingParameters, {"threads": args.threads}).run.threads == 1
    with pytest.raises(ConfigError, match="^threads must be one of 1 or 2; got 3$"):
        parse(TrainingParameters, {"threads": 3})
