"""Videos to faces: probing files, sampling frames, MTCNN face detection and crops, per-video cached extraction
for the frames and faces stages, and the worker pool (processes or Dask) they run in."""
