"""`deepfake serve`: a web page and a REST API that answer "is this uploaded video a deepfake?".

The registered model is loaded once at start; a watcher thread asks the registry every few seconds which
version the alias points at (one small query) and loads the new version in the background when it moved,
so `deepfake promote` takes effect without a restart. Predictions run in a bounded pool of worker threads,
so the event loop stays free: health checks and uploads are answered while videos are being scored.

Uploads are parsed from the request stream as they arrive (not spooled by the framework first): the size
limit is enforced on the bytes received so far, and the file is written into a private directory (0700)
made for that one request and always removed. The client's file name is only ever shown, never used for
a path. The video is checked by opening it (OpenCV), not by its extension.

Status rule: 200 whenever the video decodes from start to end (verdict REAL, FAKE or NO_FACE); 422 when it
does not (not a video, empty, truncated or corrupt), with the reason; 413 too large; 504 too slow.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.exceptions import MultipartParseError
from starlette.requests import ClientDisconnect
from python_multipart.multipart import MultipartParser, parse_options_header

from deepfake.detector import FaceEvidence, VideoDetector, json_row
from deepfake.registry import DEFAULT_MODEL_URI, LoadedDetector, load_detector_model, resolve_version
from deepfake.video import VideoError, probe_video

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one, so our lines appear with its own

WEB_DIR = Path(__file__).with_name("web")
FIELD = "file"  # the multipart form field that carries the video
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file, allowed on top of the size limit
MB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    model_uri: str = DEFAULT_MODEL_URI
    max_upload_bytes: int = 200 * MB
    timeout_s: float = 120.0  # from the end of the upload to the answer, waiting for a worker included
    workers: int = 2  # predictions at once; each one already uses every core through torch
    max_pending: int = 32  # requests being uploaded, waiting or scored; more get 503 at once
    refresh_s: float = 5.0  # how often the registry is asked where the alias points
    upload_dir: Path | None = None  # where the per-request private directories go; None: the system temp dir
    evidence_faces: int = 12  # faces shown with a Grad-CAM heatmap (spread over the video); all are charted


# ---------------------------------------------------------------- the model, following its alias


def version_uri(model_uri: str, version: str) -> str:
    """models:/NAME@ALIAS or models:/NAME/N -> models:/NAME/VERSION (other URIs are returned as they are)."""
    if not model_uri.startswith("models:/") or not version:
        return model_uri
    name = model_uri[len("models:/"):].split("@")[0].split("/")[0]
    return f"models:/{name}/{version}"


class LiveModel:
    """The model an alias points at, kept current by a watcher thread that reloads it when the alias moves."""

    def __init__(self, model_uri: str, loaded: LoadedDetector, refresh_s: float) -> None:
        self.model_uri = model_uri
        self.refresh_s = refresh_s
        self.current = loaded  # replaced whole, so a running prediction keeps the model it started with
        self.loaded_at = time.time()
        self.registry_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def load(cls, model_uri: str, refresh_s: float = 5.0) -> LiveModel:
        # Load by the version the alias names now, so the version reported is the one loaded even if the
        # alias moves meanwhile.
        version = resolve_version(model_uri)
        return cls(model_uri, load_detector_model(version_uri(model_uri, version)), refresh_s)

    @property
    def follows_alias(self) -> bool:
        return self.model_uri.startswith("models:/") and "@" in self.model_uri

    def refresh(self) -> bool:
        """Reload if the alias moved; True when it did. Registry errors are kept for /v1/health, not raised."""
        try:
            version = resolve_version(self.model_uri)
            if version != self.current.version:
                loaded = load_detector_model(version_uri(self.model_uri, version))
                log.info("model %s moved: version %s -> %s (loaded in %.1f s)", self.model_uri, self.current.version,
                         version, loaded.seconds)
                self.current, self.loaded_at = loaded, time.time()
                self.registry_error = None
                return True
            self.registry_error = None
        except Exception as error:  # noqa: BLE001 - keep serving the model we have whatever the registry does
            self.registry_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            log.warning("registry check failed, still serving version %s: %s", self.current.version, self.registry_error)
        return False

    def start(self) -> None:
        if self.follows_alias and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="alias-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()


# ---------------------------------------------------------------- receiving an upload


class UploadRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MultipartFileWriter:
    """Callbacks for python-multipart's streaming parser: the `file` field's bytes go to `target`, counted."""

    def __init__(self, target: Path, limit: int) -> None:
        self.target = target
        self.limit = limit
        self.written = 0
        self.too_large = False
        self.fields: list[str] = []
        self.filename = ""
        self.complete = False  # the file part's closing boundary arrived
        self._handle = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_part, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._disposition = b""
        self._header_name = self._header_value = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self.fields.append(name)
        if name == FIELD and self._handle is None and not self.complete:
            self.filename = display_name(options.get(b"filename", b"").decode("utf-8", "replace"))
            # O_EXCL: a fresh file of our own in our own private directory, never an existing path.
            self._handle = os.fdopen(os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._handle is None or self.too_large:
            return
        self.written += end - start
        if self.written > self.limit:
            self.too_large = True
            return
        self._handle.write(data[start:end])

    def _part_end(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.complete = True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def display_name(filename: str) -> str:
    """The client's file name for messages and the result's `video` field only: base name, printable, short."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:120] or "upload"


async def receive_upload(request: Request, target: Path, limit: int) -> str:
    """Stream the multipart body's `file` field into `target`; returns the client's file name (for display).

    Raises UploadRejected: 413 as soon as more than `limit` bytes have arrived, 422 for a body that is not
    a multipart form with a complete `file` field.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRejected(422, f"send the video as multipart/form-data in a field named '{FIELD}' "
                                  f"(got Content-Type {request.headers.get('content-type') or 'none'!r})")
    too_large = UploadRejected(413, f"upload larger than the limit of {limit / MB:g} MB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise too_large  # said so up front: refuse before reading a byte of it
    writer = MultipartFileWriter(target, limit)
    parser = MultipartParser(options[b"boundary"], writer.callbacks())
    received = 0
    try:
        async for chunk in request.stream():  # raises ClientDisconnect when the client goes away
            received += len(chunk)
            if received > limit + MULTIPART_SLACK:
                raise too_large
            parser.write(chunk)
            if writer.too_large:
                raise too_large
        parser.finalize()
    except MultipartParseError as error:
        raise UploadRejected(422, f"malformed multipart body: {error}") from None
    except ClientDisconnect:
        raise UploadRejected(400, "the client went away before the upload ended") from None
    finally:
        writer.close()
    if FIELD not in writer.fields:
        got = ", ".join(repr(f) for f in writer.fields) or "no fields"
        raise UploadRejected(422, f"expected the video in a multipart form field named '{FIELD}' (got {got})")
    if not writer.complete:
        raise UploadRejected(422, f"{writer.filename}: upload incomplete (the body ended inside the '{FIELD}' field)")
    return writer.filename


# ---------------------------------------------------------------- scoring


def unreadable_message(filename: str, reason: str) -> str:
    reason = reason.removeprefix("not a readable video: ")
    return f"{filename}: not a readable video: {reason}"


def data_uri(image_bgr: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def spread(count: int, wanted: int) -> list[int]:
    """Up to `wanted` indices spread evenly over range(count), first and last included."""
    if count <= wanted:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, wanted).round().astype(int).tolist()))


def evidence_payload(loaded: LoadedDetector, faces: list[FaceEvidence], shown: int) -> dict:
    """Every face's score over time (for the chart), and a spread of faces with crops and Grad-CAM overlays."""
    from deepfake.gradcam import gradcam, overlay

    faces = sorted(faces, key=lambda f: (f.frame_index, f.track))
    timeline = [{"frame_index": f.frame_index, "time_s": round(f.time_s, 3), "track": f.track,
                 "p_fake": round(f.p_fake, 4)} for f in faces]
    shown_at = spread(len(faces), shown)
    heatmaps = gradcam(loaded.detector.model, [faces[i].crop for i in shown_at], loaded.detector.config.input_size)
    return {"timeline": timeline, "faces": [
        timeline[i] | {"image": data_uri(faces[i].crop), "gradcam": data_uri(overlay(faces[i].crop, heatmap))}
        for i, heatmap in zip(shown_at, heatmaps)
    ]}


_worker = threading.local()


def thread_detector(loaded: LoadedDetector) -> VideoDetector:
    """This worker thread's own detector for `loaded`. The classifier is shared (read-only at inference);
    the face detector is not, because detection sets its minimum face size per call, per video."""
    own = getattr(_worker, "detector", None)
    if own is None or own[0] is not loaded:
        _worker.detector = (loaded, VideoDetector(loaded.detector.model, loaded.detector.config))
    return _worker.detector[1]


def score_upload(live: LiveModel, settings: ServeSettings, folder: Path, video: Path, filename: str,
                 evidence: bool) -> tuple[int, dict]:
    """Runs in a worker thread: (status, body). Removes the upload's folder whatever happens."""
    try:
        loaded = live.current
        row, faces = thread_detector(loaded).predict_with_faces(video, keep_faces=evidence)
        if row["verdict"] == "ERROR":
            # Decoded at the probe but not here (rare: damage between the first and last frames).
            return 422, {"detail": unreadable_message(filename, row["reason"].removeprefix(f"{video.name}: "))}
        row = json_row(row | {"video": filename, "model": settings.model_uri, "model_version": loaded.version})
        row["reason"] = row["reason"].replace(video.name, filename)
        if evidence:
            row["evidence"] = evidence_payload(loaded, faces, settings.evidence_faces)
        return 200, row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary", "description": "the video (any format OpenCV reads)"}},
}}}}}


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

    app = FastAPI(title="Deepfake video detector", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Upload a video; get the verdict, P(fake) and per-person scores of the registered model.")

    def scored(*args) -> tuple[int, dict]:
        counters.started()
        try:
            return score_upload(*args)
        finally:
            counters.finished()

    @app.post("/v1/predict", openapi_extra=UPLOAD_BODY, summary="Is this video a deepfake?", responses={
        413: {"description": "upload larger than the limit"},
        422: {"description": "not a readable video, or no `file` field"},
        503: {"description": "too many requests in progress"}, 504: {"description": "took longer than the timeout"}})
    async def predict(request: Request, evidence: bool = False) -> dict:
        """The same record as `deepfake predict`, for the uploaded video; `evidence=true` adds each face's score
        over time and a spread of face crops with Grad-CAM heatmaps."""
        if counters.pending >= settings.max_pending:
            raise HTTPException(503, f"busy: {counters.pending} requests in progress; try again shortly",
                                headers={"Retry-After": "5"})
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
            future = executor.submit(scored, live, settings, folder, video, filename, evidence)
            handed_over = True  # from here the job removes the folder
            try:
                status, body = await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
            except asyncio.TimeoutError:
                if future.cancelled():  # never started, so its cleanup never runs
                    shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(504, f"{filename}: no answer within the {settings.timeout_s:g} s limit "
                                         "(the server is busy or the video is long); try again later") from None
            if status != 200:
                raise HTTPException(status, body["detail"])
            return body
        finally:
            counters.pending -= 1
            if not handed_over:
                shutil.rmtree(folder, ignore_errors=True)

    @app.get("/v1/health", summary="Is the service up, which version does it serve, how busy is it?")
    async def health() -> dict:
        return {"status": "ok", "model": settings.model_uri, "model_version": live.current.version,
                "predictions_running": counters.running,
                "predictions_waiting": max(0, counters.pending - counters.running),
                "registry_error": live.registry_error}

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
    from deepfake.registry import model_versions

    loaded = live.current
    reference = live.model_uri.removeprefix("models:/")
    name, alias = reference.split("@", 1) if "@" in reference else (reference.split("/")[0], None)
    config = loaded.detector.config
    info = {"uri": live.model_uri, "name": name, "version": loaded.version, "alias": alias,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.loaded_at)),
            "load_seconds": round(loaded.seconds, 2),
            "backbone": config.backbone, "input_size": config.input_size, "threshold": config.threshold,
            "temperature": config.temperature, "aggregation": config.aggregation.strategy,
            "aliases": [], "metrics": {}, "decision": "", "registry_error": live.registry_error,
            "limits": {"max_upload_mb": round(settings.max_upload_bytes / MB, 3), "timeout_s": settings.timeout_s}}
    try:
        versions = model_versions(name)
    except Exception as error:  # noqa: BLE001 - the model is served even if the registry is away
        info["registry_error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
        return info
    row = versions[versions["version"].astype(str) == str(loaded.version)]
    if len(row):
        row = row.iloc[0]
        info["aliases"] = [a for a in row["aliases"].split(",") if a]
        info["metrics"] = {k: (float(row[k]) if row[k] not in ("", None) else None)
                           for k in ("video_auc", "video_accuracy", "video_log_loss", "face_auc")}
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
            return HTMLResponse("<!doctype html><title>API</title><p>Swagger UI assets are not installed "
                                "(pip install swagger-ui-bundle-v2); the API description is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})
