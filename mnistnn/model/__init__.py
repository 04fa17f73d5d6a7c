"""The network: maths, compiled engine, optimisers, augmentation, metrics, checkpoints."""
