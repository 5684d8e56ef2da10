"""Receiving an uploaded video: the multipart body parsed from the request stream as it arrives.

The size limit is enforced on the bytes received so far (never spooled by the framework first), and the
file is written into a private directory made for that one request. The client's file name is only ever
shown, never used for a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

FIELD = "file"  # the multipart form field that carries the video
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file, allowed on top of the size limit
MB = 1024 * 1024


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
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

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
        raise UploadRejected(
            422,
            f"send the video as multipart/form-data in a field named '{FIELD}' "
            f"(got Content-Type {request.headers.get('content-type') or 'none'!r})",
        )
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
