"""Deployment definitions: prefect.yaml for workers, serve.py for the no-worker path."""
