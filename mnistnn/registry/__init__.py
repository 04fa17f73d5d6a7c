"""The model registry: versions, the champion, and the promotion rule."""
