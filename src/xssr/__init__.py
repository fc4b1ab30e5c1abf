"""xssr: choose which target-domain images to annotate, then train and evaluate on them."""

__version__ = "0.1.0"
