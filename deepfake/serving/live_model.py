"""The registered model an alias points at, kept current while `deepfake serve` runs.

A watcher thread asks the registry every few seconds which version the alias points at (one small query)
and loads the new version in the background when it moved, so `deepfake promote` takes effect without a
restart. Registry errors are kept for /v1/health, never raised: the server keeps serving what it has.
"""

from __future__ import annotations

import logging
import threading
import time

from deepfake.errors import first_line
from deepfake.serving.loading import LoadedDetector, load_detector_model
from deepfake.tracking import resolve_version

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one, so our lines appear with its own


def version_uri(model_uri: str, version: str) -> str:
    """models:/NAME@ALIAS or models:/NAME/N -> models:/NAME/VERSION (other URIs are returned as they are)."""
    if not model_uri.startswith("models:/") or not version:
        return model_uri
    name = model_uri[len("models:/") :].split("@")[0].split("/")[0]
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
                log.info(
                    "model %s moved: version %s -> %s (loaded in %.1f s)",
                    self.model_uri,
                    self.current.version,
                    version,
                    loaded.seconds,
                )
                self.current, self.loaded_at = loaded, time.time()
                self.registry_error = None
                return True
            self.registry_error = None
        except Exception as error:  # noqa: BLE001 - keep serving the model we have whatever the registry does
            self.registry_error = f"{type(error).__name__}: {first_line(error)}"
            log.warning(
                "registry check failed, still serving version %s: %s", self.current.version, self.registry_error
            )
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
