"""One rule for presets: reference defaults, then the preset, then every explicit value."""

from __future__ import annotations

import pytest

from mnistnn import ConfigError, NetworkConfig
from mnistnn.presets import PRESETS, SETTINGS, resolve


def test_no_preset_is_the_reference() -> None:
    resolved = resolve(None, {})
    assert resolved.config == NetworkConfig()
    assert resolved.epochs == 15
    assert resolved.describe() == "the reference defaults; explicitly set: nothing"


def test_preset_then_explicit_values_win() -> None:
    resolved = resolve("best", {"hidden_nodes": 100, "epochs": 3, "seed": None})
    assert resolved.config.hidden_nodes == 100
    assert resolved.epochs == 3
    assert resolved.config.output == "softmax"  # the rest of the preset still applies
    assert resolved.overrides == ("epochs", "hidden_nodes")
    assert "preset best" in resolved.describe() and "hidden_nodes" in resolved.describe()


def test_every_preset_setting_is_a_known_setting() -> None:
    for name, settings in PRESETS.items():
        assert set(settings) <= set(SETTINGS), name
        resolve(name, {})  # and builds a valid configuration


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("fastest", {}, "unknown preset 'fastest'"),
        (None, {"hidden": 3}, "unknown setting"),
        (None, {"epochs": 0}, "epochs must be >= 1, got 0"),
        (None, {"epochs": 2.5}, "epochs must be an integer"),
        (None, {"evaluate_every": 0}, "^evaluate_every must be >= 1, got 0$"),
        ("best", {"evaluate_every": "2"}, "^evaluate_every must be an integer >= 1, got '2'$"),
        ("best", {"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
    ],
)
def test_bad_settings_name_the_setting(name: str | None, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(name, overrides)


def test_evaluation_schedule_is_a_preset_default_outside_the_configuration() -> None:
    assert resolve(None, {}).evaluate_every == 1
    best = resolve("best", {})
    assert best.evaluate_every == PRESETS["best"]["evaluate_every"] > 1
    dense = resolve("best", {"evaluate_every": 1})
    assert dense.evaluate_every == 1 and dense.config == best.config  # not part of the run key
