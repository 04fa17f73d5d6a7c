"""mnistnn: the classic three-layer network on MNIST, exact to the reference and fast."""

from __future__ import annotations

from mnistnn._version import __version__
from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.errors import CheckpointError, ConfigError, DataError, MnistnnError, RegistryError
from mnistnn.model.network import NeuralNetwork

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataPaths",
    "MnistnnError",
    "NetworkConfig",
    "NeuralNetwork",
    "RegistryError",
    "__version__",
]
