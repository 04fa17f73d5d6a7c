"""Prediction on your own digits: image preprocessing, batch prediction, previews."""
