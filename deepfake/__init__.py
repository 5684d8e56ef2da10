"""Deepfake video detection: dataset ingestion, frame sampling, face crops, training and inference."""

__version__ = "0.1.0"
