"""`deepfake serve` for real: a uvicorn server in a subprocess, a SQLite registry, real clips over HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from typer.testing import CliRunner

from deepfake.cli import app
from deepfake.serving.video_detector import RESULT_COLUMNS
from tests.conftest import Server, free_port, make_clip

pytestmark = pytest.mark.slow

BOUNDARY = "test-boundary-7f3a"


def post_video(
    server: Server, path: Path, *, field: str = "file", name: str | None = None, **params
) -> requests.Response:
    with open(path, "rb") as handle:
        return requests.post(
            f"{server.url}/v1/predict",
            params=params,
            timeout=120,
            files={field: (name or path.name, handle, "video/mp4")},
        )


def uploads_left(server: Server) -> list[Path]:
    return list(server.uploads.iterdir()) if server.uploads.exists() else []


def wait_for(condition, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def cli(server: Server, *args: str):
    """The `deepfake` command on the server's registry, run in this process (a new interpreter costs seconds)."""
    return CliRunner().invoke(app, list(args), env={"MLFLOW_TRACKING_URI": server.env["MLFLOW_TRACKING_URI"]})


def multipart_head(filename: str = "big.mp4") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


def raw_post(server: Server, headers: dict, body: Iterable[bytes]) -> tuple[int, dict]:
    """POST /v1/predict over a bare socket, sending `body` piece by piece and stopping as soon as the server
    answers; returns the status and the JSON body. The body can thus be longer than what is ever sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", **headers}.items())
        sock.sendall(f"POST /v1/predict HTTP/1.1\r\n{head}\r\n".encode())
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # answered already
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # No closing "0\r\n\r\n": the body never ends, so any answer came before the server read it all.


def test_a_clip_with_faces_gets_the_same_record_as_deepfake_predict(served):
    clip = served.clips[0]
    response = post_video(served, clip)
    assert response.status_code == 200, response.text
    row = response.json()
    assert list(row) == RESULT_COLUMNS + ["model", "model_version"]
    assert row["verdict"] in ("REAL", "FAKE") and 0 <= row["p_fake"] <= 1
    assert row["video"] == clip.name and row["model_version"] == "1" and row["frames"] == 4
    noise = post_video(served, served.noise).json()
    result = cli(served, "predict", str(clip), str(served.noise))
    assert result.exit_code == 0, result.output
    expected = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(expected) == 2
    for answer, record in zip((row, noise), expected):
        assert answer == record | {"video": Path(record["video"]).name}
    assert uploads_left(served) == []


def test_a_clip_without_faces_is_200_no_face(served):
    response = post_video(served, served.noise)
    assert response.status_code == 200
    row = response.json()
    assert row["verdict"] == "NO_FACE" and row["p_fake"] is None and row["faces"] == 0
    assert "no face" in row["reason"]


def test_a_text_file_named_mp4_is_422_not_a_readable_video(served, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is text, not a video")
    response = post_video(served, notes)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("notes.mp4: not a readable video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    response = post_video(served, empty)
    assert (
        response.status_code == 422
        and response.json()["detail"] == "empty.mp4: not a readable video: empty file (0 bytes)"
    )
    assert uploads_left(served) == []


def test_a_truncated_file_is_422_saying_so(served, tmp_path, ffmpeg):
    # Index at the front (faststart): what is left opens, and decoding stops early. (A clip long enough
    # that losing half is more than the few tail frames a container's count may overshoot by.)
    front = tmp_path / "front.mp4"
    subprocess.run(
        [
            ffmpeg,
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(make_clip(tmp_path / "long.mp4", frames=40)),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(front),
        ],
        check=True,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(front.read_bytes()[: front.stat().st_size // 2])
    response = post_video(served, cut)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("cut.mp4: not a readable video: truncated or corrupt") and "decoding stops" in detail
    # Index at the end (as OpenCV writes): cut in half, the file cannot be opened at all.
    half = tmp_path / "half.mp4"
    half.write_bytes(served.clips[0].read_bytes()[: served.clips[0].stat().st_size // 2])
    response = post_video(served, half)
    assert response.status_code == 422 and "half.mp4: not a readable video" in response.json()["detail"]
    assert "truncated" in response.json()["detail"]
    assert uploads_left(served) == []


def test_the_wrong_field_name_is_422_naming_the_expected_field(served):
    response = post_video(served, served.clips[0], field="video")
    assert response.status_code == 422
    assert response.json()["detail"] == "expected the video in a multipart form field named 'file' (got 'video')"
    response = requests.post(
        f"{served.url}/v1/predict", data=served.clips[0].read_bytes(), headers={"Content-Type": "video/mp4"}, timeout=60
    )
    assert response.status_code == 422 and "multipart/form-data in a field named 'file'" in response.json()["detail"]
    assert uploads_left(served) == []


def test_an_upload_declared_too_large_is_413_before_its_body_is_read(served):
    status, body = raw_post(
        served,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(50 * 1024 * 1024)},
        [],
    )
    assert status == 413 and body["detail"] == "upload larger than the limit of 1 MB"
    assert uploads_left(served) == []


def test_a_streamed_upload_is_413_as_soon_as_it_passes_the_limit(served):
    pieces = [multipart_head()] + [bytes(64 * 1024)] * 48  # 3 MB of a 1 MB limit, and no end
    status, body = raw_post(
        served,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"},
        chunked(pieces),
    )
    assert status == 413 and "limit of 1 MB" in body["detail"]
    wait_for(lambda: uploads_left(served) == [], "the upload folder to be removed", 10)


def test_an_upload_goes_to_a_private_folder_that_is_removed_when_the_client_leaves(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(
            (
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                f"boundary={BOUNDARY}\r\nContent-Length: 900000\r\n\r\n"
            ).encode()
            + multipart_head("../../../etc/passwd")
            + bytes(100_000)
        )
        video = wait_for(lambda: [p for folder in uploads_left(served) for p in folder.iterdir()], "the upload file")[0]
        assert stat.S_IMODE(video.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(video.stat().st_mode) == 0o600
        assert video.parent.parent == served.uploads and video.name == "video"  # never the client's name
    wait_for(lambda: uploads_left(served) == [], "the upload folder to be removed after the client left", 30)


def test_health_and_model_describe_what_is_served(served):
    health = requests.get(f"{served.url}/v1/health", timeout=10).json()
    assert health["status"] == "ok" and health["model_version"] == "1" and health["registry_error"] is None
    assert health["model"] == "models:/deepfake-detector@champion"
    model = requests.get(f"{served.url}/v1/model", timeout=30).json()
    assert (model["name"], model["version"], model["alias"]) == ("deepfake-detector", "1", "champion")
    assert model["aliases"] == ["champion"] and model["decision"] == "champion: no champion yet"
    assert set(model["metrics"]) == {"video_auc", "video_accuracy", "video_log_loss", "face_auc"}
    assert model["backbone"] == "resnet18" and model["input_size"] == 64
    assert model["limits"]["max_upload_mb"] == 1


def test_health_answers_while_predictions_run(served):
    answers = []

    def predict() -> None:
        answers.append(post_video(served, served.clips[1]).status_code)

    threads = [threading.Thread(target=predict) for _ in range(3)]
    for thread in threads:
        thread.start()
    busy = []  # health answers given while a prediction was running
    while any(thread.is_alive() for thread in threads) and not busy:
        health = requests.get(f"{served.url}/v1/health", timeout=5).json()
        if health["predictions_running"] >= 1:
            busy.append(health)
    for thread in threads:
        thread.join(timeout=120)
    assert busy and busy[0]["status"] == "ok" and busy[0]["predictions_running"] <= 2  # two workers
    assert answers == [200, 200, 200]
    assert requests.get(f"{served.url}/v1/health", timeout=5).json()["predictions_running"] == 0
    assert uploads_left(served) == []


def test_a_moved_alias_is_followed_without_a_restart(served):
    def serving(version: str):
        return requests.get(f"{served.url}/v1/health", timeout=5).json()["model_version"] == version

    result = cli(served, "promote", "2")
    assert result.exit_code == 0, result.output
    try:
        wait_for(lambda: serving("2"), "the server to load version 2")
        assert post_video(served, served.clips[0]).json()["model_version"] == "2"
        model = requests.get(f"{served.url}/v1/model", timeout=30).json()
        assert model["version"] == "2" and "champion" in model["aliases"]
    finally:
        assert cli(served, "promote", "1").exit_code == 0  # roll back for the other tests
        wait_for(lambda: serving("1"), "the server to load version 1 again")


def test_evidence_has_every_face_score_and_grad_cam_images(served):
    response = post_video(served, served.clips[0], evidence="true")
    assert response.status_code == 200
    row = response.json()
    evidence = row.pop("evidence")
    assert row == post_video(served, served.clips[0]).json()  # the record itself is unchanged
    assert len(evidence["timeline"]) == row["faces"]
    assert [p["time_s"] for p in evidence["timeline"]] == sorted(p["time_s"] for p in evidence["timeline"])
    assert 1 <= len(evidence["faces"]) <= 12
    for face in evidence["faces"]:
        assert set(face) == {"frame_index", "time_s", "track", "p_fake", "image", "gradcam"}
        for key in ("image", "gradcam"):
            prefix, _, data = face[key].partition(",")
            assert prefix == "data:image/jpeg;base64"
            image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (64, 64, 3)  # the crop's size


def test_docs_work_offline(served):
    page = requests.get(f"{served.url}/docs", timeout=10)
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert requests.get(f"{served.url}/docs-assets/{asset}", timeout=10).status_code == 200
    spec = requests.get(f"{served.url}/openapi.json", timeout=10).json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and {"/v1/health", "/v1/model"} <= set(spec["paths"])


def test_a_prediction_over_the_time_limit_is_504(served, tmp_path, monkeypatch):
    """A second server, in a thread of this process, whose time limit no prediction can meet."""
    import uvicorn

    from deepfake.serving.app import ServeSettings, create_app
    from deepfake.serving.live_model import LiveModel
    from deepfake.tracking import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.env["MLFLOW_TRACKING_URI"])
    connect(experiment=False)
    uploads = tmp_path / "uploads"
    settings = ServeSettings(model_uri="models:/deepfake-detector@champion", timeout_s=0.001, upload_dir=uploads)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(LiveModel.load(settings.model_uri), settings), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the second server to start")
        with open(served.clips[0], "rb") as handle:
            response = requests.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": handle}, timeout=60)
        assert response.status_code == 504
        assert response.json()["detail"] == (
            f"{served.clips[0].name}: no answer within the 0.001 s limit "
            "(the server is busy or the video is long); try again later"
        )
        wait_for(lambda: list(uploads.iterdir()) == [], "the timed-out job to remove its upload", 60)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
