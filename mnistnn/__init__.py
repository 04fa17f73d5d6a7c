"""mnistnn: the classic three-layer network on MNIST, exact to the reference and fast."""

from __future__ import annotations

from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.errors import CheckpointError, ConfigError, DataError, MnistnnError, RegistryError
from mnistnn.model.network import NeuralNetwork

__version__ = "0.1.0"

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
