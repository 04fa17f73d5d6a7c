"""Bottom layer: storage, files, hashes, locks, JSON records; imports only mnistnn.errors."""
