"""Prefect flows that run the DVC pipeline on a schedule (flows → stages → deepfake; never the reverse)."""
