"""`python -m deployments.serve`: serve the nightly-retrain deployment (see `flows.serve`)."""

from flows.serve import serve

if __name__ == "__main__":
    serve()
