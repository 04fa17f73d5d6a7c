"""Data layer: MNIST CSV text, validation rules, parsing, Parquet, content-addressed ingest."""
