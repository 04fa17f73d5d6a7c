"""Named configurations: the book's reference, and the measured high-accuracy preset.

`best` was chosen by `benchmarks/bench_accuracy.py` on the bundled data on a 2-core machine;
its epochs are part of the preset because the cosine schedule is laid out over them.
"""

from __future__ import annotations

from typing import Any

from mnistnn.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "reference": {"epochs": 15},
    "best": {
        "hidden_nodes": 800,
        "output": "softmax",
        "biases": True,
        "momentum": 0.9,
        "learning_rate": 0.05,
        "batch_size": 64,
        "schedule": "cosine",
        "schedule_epochs": 30,
        "shuffle": True,
        "augment": "affine",
        "dtype": "float32",
        "init": "default",
        "epochs": 30,
    },
}


def preset(name: str) -> dict[str, Any]:
    """A copy of preset `name`'s settings (NetworkConfig fields plus `epochs`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
