"""Bottom layer: storage, files, locks, records; imports nothing else of mnistnn."""
