"""Tests of mnistnn.core: the storage layer over a local folder and a real S3 server."""
