"""Writing results: atomic files, stage manifests, provenance."""
