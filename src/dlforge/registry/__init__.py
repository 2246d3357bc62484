"""Metadata and artifact store: evaluation, the MLflow model registry, promotion, lineage."""
