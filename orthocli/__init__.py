"""orthocli: score, prune and re-initialise convolutional filters by orthogonality (RePr)."""

__version__ = "0.1.0"
