"""Answering "is this video a deepfake?": the video detector, the registered MLflow model's code, loading it
by alias, Grad-CAM evidence, and the web app (`deepfake serve`)."""
