"""Bottom layer: files, hashes, locks, JSON records; imports nothing else of mnistnn."""
