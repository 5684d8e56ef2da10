"""ONNX Runtime for the small networks that score every video: MTCNN's three and the face classifier.

PyTorch stays the source of every weight (facenet-pytorch's MTCNN, the trained classifier's state_dict); each
network is exported to ONNX once and kept in a cache keyed by what it was exported from, so later runs load
the file and never import torch for it. ONNX Runtime's fused CPU kernels run these nets 1.5-3x faster than
eager PyTorch here (bench/predict.py), and the session starts in milliseconds.

The cache is `$DEEPFAKE_CACHE`, else `$XDG_CACHE_HOME/deepfake-pipeline`, else `~/.cache/deepfake-pipeline`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("DEEPFAKE_CACHE"):
        return Path(os.environ["DEEPFAKE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepfake-pipeline"


def cached_export(name: str, key: str, export: Callable[[Path], None]) -> Path:
    """`<cache>/<name>-<key>.onnx`, made by `export(path)` when missing; written beside it and renamed, so a
    reader never sees half a file and two processes exporting at once both end with a whole one."""
    folder = cache_dir()
    path = folder / f"{name}-{key}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=".onnx.tmp", dir=folder)
    os.close(handle)
    try:
        export(Path(temporary))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def file_key(*parts: str | os.PathLike) -> str:
    """A short key from strings and the bytes of files (a path that exists counts by its content)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, os.PathLike) and Path(part).is_file():
            digest.update(Path(part).read_bytes())
        else:
            digest.update(str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def session(path: str | os.PathLike, threads: int = 0):
    """An ONNX Runtime CPU session with every graph optimisation. `threads` 0: OMP_NUM_THREADS when set (the
    stage pool's workers set it to their share of the cores), else all cores."""
    import onnxruntime

    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    # No busy-waiting between runs: inference interleaves these nets with decoding and OpenCV work, and
    # spinning threads took the cores from them (a 1080p clip scored 2x slower than its parts added up).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_module(module, example, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    """torch.onnx.export with the TorchScript exporter: these nets are plain convolution stacks, and it
    exports them in a fraction of a second without extra packages."""
    import warnings

    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding: nothing a user can act on
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
