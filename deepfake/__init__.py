"""Deepfake video detection: dataset ingestion, frame sampling, face crops, training, evaluation and inference.

Layers, each importing only those before it: config, errors, atomic, images (shared by all) -> video ->
data; model -> evaluation -> serving (which also uses video); tracking (MLflow) uses only the first row.
"""

import os

# FFmpeg's own log lines ("moov atom not found") would repeat on stderr what our errors say in words.
# Set before any module imports cv2.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
