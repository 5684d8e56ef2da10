"""`deepfake serve`: a web page and a REST API that answer "is this uploaded video a deepfake?".

The model follows its alias (`live_model`); uploads are streamed into a private directory per request
(`upload`) and always removed. Predictions run in a bounded pool of worker threads, so the event loop stays
free: health checks and uploads are answered while videos are being scored. The video is checked by
opening it (OpenCV), not by its extension.

Status rule: 200 whenever the video decodes from start to end (verdict REAL, FAKE or NO_FACE); 422 when it
does not (not a video, empty, truncated or corrupt), with the reason; 413 too large; 504 too slow.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import functools
import logging
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from deepfake.errors import VideoError, first_line
from deepfake.images import encode
from deepfake.serving.live_model import LiveModel
from deepfake.serving.loading import LoadedDetector
from deepfake.serving.upload import FIELD, MB, UploadRejected, receive_upload
from deepfake.serving.video_detector import UNEXPECTED, FaceEvidence, VideoDetector, json_row
from deepfake.video.probe import probe_video

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one, so our lines appear with its own

WEB_DIR = Path(__file__).with_name("web")


@dataclass(frozen=True)
class ServeSettings:
    model_uri: str  # the registered model served (params.yaml's register.model_uri unless told otherwise)
    max_upload_bytes: int = 200 * MB
    timeout_s: float = 120.0  # from the end of the upload to the answer, waiting for a worker included
    workers: int = 2  # predictions at once; each one already uses every core through torch
    max_pending: int = 32  # requests being uploaded, waiting or scored; more get 503 at once
    refresh_s: float = 5.0  # how often the registry is asked where the alias points
    upload_dir: Path | None = None  # where the per-request private directories go; None: the system temp dir
    evidence_faces: int = 12  # faces shown with a Grad-CAM heatmap (spread over the video); all are charted


# ---------------------------------------------------------------- scoring


def unreadable_message(filename: str, reason: str) -> str:
    reason = reason.removeprefix("not a readable video: ")
    return f"{filename}: not a readable video: {reason}"


def data_uri(image_bgr: np.ndarray) -> str:
    _, encoded = encode(image_bgr, 85)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def spread(count: int, wanted: int) -> list[int]:
    """Up to `wanted` indices spread evenly over range(count), first and last included."""
    if count <= wanted:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, wanted).round().astype(int).tolist()))


def evidence_payload(loaded: LoadedDetector, faces: list[FaceEvidence], shown: int) -> dict:
    """Every face's score over time (for the chart), and a spread of faces with crops and Grad-CAM overlays."""
    from deepfake.serving.gradcam import gradcam, overlay

    faces = sorted(faces, key=lambda f: (f.frame_index, f.track))
    timeline = [
        {"frame_index": f.frame_index, "time_s": round(f.time_s, 3), "track": f.track, "p_fake": round(f.p_fake, 4)}
        for f in faces
    ]
    shown_at = spread(len(faces), shown)
    heatmaps = gradcam(
        loaded.detector.model.torch_model(), [faces[i].crop for i in shown_at], loaded.detector.config.input_size
    )
    return {
        "timeline": timeline,
        "faces": [
            timeline[i] | {"image": data_uri(faces[i].crop), "gradcam": data_uri(overlay(faces[i].crop, heatmap))}
            for i, heatmap in zip(shown_at, heatmaps)
        ],
    }


_worker = threading.local()


def thread_detector(loaded: LoadedDetector) -> VideoDetector:
    """This worker thread's own detector for `loaded`. The classifier is shared (read-only at inference);
    the face detector is not, because detection sets its minimum face size per call, per video."""
    own = getattr(_worker, "detector", None)
    if own is None or own[0] is not loaded:
        _worker.detector = (loaded, VideoDetector(loaded.detector.model, loaded.detector.config))
    return _worker.detector[1]


def score_upload(
    live: LiveModel, settings: ServeSettings, folder: Path, video: Path, filename: str, evidence: bool
) -> tuple[int, dict]:
    """Runs in a worker thread: (status, body), never an exception. Removes the upload's folder whatever happens."""
    try:
        loaded = live.current
        row, faces = thread_detector(loaded).predict_with_faces(video, keep_faces=evidence)
        if row["verdict"] == "ERROR":
            reason = row["reason"].replace(str(video), filename).replace(video.name, filename)
            if reason.startswith(UNEXPECTED):
                return 422, {"detail": f"{filename}: {reason}"}
            # Decoded at the probe but not here (rare: damage between the first and last frames).
            return 422, {"detail": unreadable_message(filename, reason.removeprefix(f"{filename}: "))}
        row = json_row(row | {"video": filename, "model": settings.model_uri, "model_version": loaded.version})
        row["reason"] = row["reason"].replace(video.name, filename)
        if evidence:
            try:
                row["evidence"] = evidence_payload(loaded, faces, settings.evidence_faces)
            except Exception as error:  # the verdict stands without its illustrations
                log.exception("evidence for %s failed", filename)
                row["evidence_error"] = f"{type(error).__name__}: {error}"
        return 200, row
    except Exception as error:  # one upload's failure is its answer, never a 500
        log.exception("scoring %s failed", filename)
        return 422, {"detail": f"{filename}: {UNEXPECTED}: {type(error).__name__}: {error}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        release_memory()


def release_memory() -> None:
    """Give the freed frames and tensors of a finished request back to the system.

    glibc keeps freed memory in per-thread arenas; after a burst of requests the server would otherwise stay
    hundreds of MB above its idle size. `malloc_trim` returns what is free (a no-op elsewhere).
    """
    if _libc() is not None:
        _libc().malloc_trim(0)


@functools.cache
def _libc():
    """glibc, loaded once; None where there is none (musl, macOS) and so nothing to trim."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


# ---------------------------------------------------------------- the app


@dataclass
class Counters:
    pending: int = 0  # requests inside /v1/predict (touched by the event loop only)
    running: int = 0  # predictions on a worker thread now
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self) -> None:
        with self.lock:
            self.running += 1

    def finished(self) -> None:
        with self.lock:
            self.running -= 1


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "the video (any format OpenCV reads)",
                        }
                    },
                }
            }
        },
    }
}


def create_app(live: LiveModel, settings: ServeSettings) -> FastAPI:
    from contextlib import asynccontextmanager

    executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="predict")
    counters = Counters()
    upload_root = Path(settings.upload_dir or tempfile.gettempdir())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        upload_root.mkdir(parents=True, exist_ok=True)
        live.start()
        yield
        live.stop()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Deepfake video detector",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Upload a video; get the verdict, P(fake) and per-person scores of the registered model.",
    )

    def scored(*args) -> tuple[int, dict]:
        counters.started()
        try:
            return score_upload(*args)
        finally:
            counters.finished()

    @app.post(
        "/v1/predict",
        openapi_extra=UPLOAD_BODY,
        summary="Is this video a deepfake?",
        responses={
            413: {"description": "upload larger than the limit"},
            422: {"description": "not a readable video, or no `file` field"},
            503: {"description": "too many requests in progress"},
            504: {"description": "took longer than the timeout"},
        },
    )
    async def predict(request: Request, evidence: bool = False) -> dict:
        """The same record as `deepfake predict`, for the uploaded video; `evidence=true` adds each face's score
        over time and a spread of face crops with Grad-CAM heatmaps."""
        if counters.pending >= settings.max_pending:
            raise HTTPException(
                503, f"busy: {counters.pending} requests in progress; try again shortly", headers={"Retry-After": "5"}
            )
        counters.pending += 1
        folder = Path(tempfile.mkdtemp(prefix="deepfake-upload-", dir=upload_root))  # 0700: this request's own
        handed_over = False
        try:
            video = folder / "video"
            try:
                filename = await receive_upload(request, video, settings.max_upload_bytes)
                await run_in_threadpool(probe_video, video)
            except UploadRejected as rejected:
                raise HTTPException(rejected.status, str(rejected)) from None
            except VideoError as error:
                raise HTTPException(422, unreadable_message(filename, str(error))) from None
            except OSError as error:  # the server's side: disk full, temp folder gone
                log.exception("could not store or open an upload")
                raise HTTPException(
                    503, f"the server could not store the upload ({error.strerror or error}); try again later"
                ) from None
            except Exception as error:  # never a 500: the answer names what went wrong
                log.exception("could not check an upload")
                raise HTTPException(422, f"{UNEXPECTED}: {type(error).__name__}: {error}") from None
            future = executor.submit(scored, live, settings, folder, video, filename, evidence)
            handed_over = True  # from here the job removes the folder
            try:
                status, body = await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
            except TimeoutError:
                if future.cancelled():  # never started, so its cleanup never runs
                    shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(
                    504,
                    f"{filename}: no answer within the {settings.timeout_s:g} s limit "
                    "(the server is busy or the video is long); try again later",
                ) from None
            if status != 200:
                raise HTTPException(status, body["detail"])
            return body
        finally:
            counters.pending -= 1
            if not handed_over:
                shutil.rmtree(folder, ignore_errors=True)

    @app.get("/v1/health", summary="Is the service up, which version does it serve, how busy is it?")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": settings.model_uri,
            "model_version": live.current.version,
            "predictions_running": counters.running,
            "predictions_waiting": max(0, counters.pending - counters.running),
            "registry_error": live.registry_error,
        }

    @app.get("/v1/model", summary="The model served: name, version, alias, test metrics, settings")
    async def model() -> dict:
        return await run_in_threadpool(model_info, live, settings)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    add_offline_docs(app)
    return app


def model_info(live: LiveModel, settings: ServeSettings) -> dict:
    from deepfake.tracking import model_versions

    loaded = live.current
    reference = live.model_uri.removeprefix("models:/")
    name, alias = reference.split("@", 1) if "@" in reference else (reference.split("/")[0], None)
    config = loaded.detector.config
    info = {
        "uri": live.model_uri,
        "name": name,
        "version": loaded.version,
        "alias": alias,
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.loaded_at)),
        "load_seconds": round(loaded.seconds, 2),
        "backbone": config.backbone,
        "input_size": config.input_size,
        "threshold": config.threshold,
        "temperature": config.temperature,
        "aggregation": config.aggregation.strategy,
        "aliases": [],
        "metrics": {},
        "decision": "",
        "registry_error": live.registry_error,
        "limits": {"max_upload_mb": round(settings.max_upload_bytes / MB, 3), "timeout_s": settings.timeout_s},
    }
    try:
        versions = model_versions(name)
    except Exception as error:  # noqa: BLE001 - the model is served even if the registry is away
        info["registry_error"] = first_line(error)
        return info
    row = versions[versions["version"].astype(str) == str(loaded.version)]
    if len(row):
        row = row.iloc[0]
        info["aliases"] = [a for a in row["aliases"].split(",") if a]
        info["metrics"] = {
            k: (float(row[k]) if row[k] not in ("", None) else None)
            for k in ("video_auc", "video_accuracy", "video_log_loss", "face_auc")
        }
        info["decision"] = row["decision"]
        info["created"] = row["created"]
    return info


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the assets of the swagger-ui-bundle package, not from a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path is not None:
        app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger_ui_path is None:
            return HTMLResponse(
                "<!doctype html><title>API</title><p>Swagger UI assets are not installed "
                "(pip install swagger-ui-bundle-v2); the API description is at "
                "<a href='/openapi.json'>/openapi.json</a>.</p>"
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
