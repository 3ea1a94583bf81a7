"""Receiving an upload as it arrives: the multipart body is parsed while it streams in, the `file`
part written straight to the job's folder, and the size limit enforced on the way, so nothing larger
than the limit is ever written (Starlette's own form parsing would spool the whole body to /tmp first).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

FIELD = "file"
MAX_HEADERS = 8 << 10  # bytes of part headers a form may send
MULTIPART_SLACK = 64 << 10  # what a multipart body may hold beyond the file (boundaries, headers)


class Refused(Exception):
    """A request the service will not take: the HTTP status, one line saying why, and any headers
    (Retry-After). Raised here for an upload, and by the web app for its other refusals."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def safe_name(name: str | None) -> str:
    """A file name safe to store and show: no folders, no control or shell characters, <= 120 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9_.\- ]+", "_", base).strip(" .") or "upload"
    return base[:120]


def multipart_boundary(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise Refused(415, "send the video as multipart/form-data with a field named 'file'")
    return params[b"boundary"]


def part_file_name(headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """(field name, file name) from a part's Content-Disposition."""
    _, params = parse_options_header(headers.get(b"content-disposition", b""))
    name = params.get(b"name")
    filename = params.get(b"filename")
    return (name.decode("utf-8", "replace") if name is not None else None,
            filename.decode("utf-8", "replace") if filename is not None else None)


class FilePartWriter:
    """Feeds multipart chunks to python-multipart's streaming parser; the first part named `file` goes
    to `open_file(filename)`'s handle, other parts are dropped. Raises Refused(413) as soon as
    the file passes `limit` bytes."""

    def __init__(self, boundary: bytes, limit: int, open_file):
        self.limit, self.open_file = limit, open_file
        self.size = 0
        self.filename: str | None = None
        self.found = False
        self._fh = None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._header_bytes = 0
        self._in_file = False
        self._error: Refused | None = None
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        })

    def feed(self, chunk: bytes) -> None:
        self.parser.write(chunk)
        if self._error:
            raise self._error

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # python-multipart callbacks (errors are raised from `feed`, outside the parser)
    def _part_begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADERS and not self._error:
            self._error = Refused(400, "the form's part headers are too large")

    def _headers_done(self) -> None:
        field, filename = part_file_name(self._headers)
        # a form's file input with no file chosen sends an empty file name: not the upload
        if field == FIELD and not self.found and filename:
            self.found, self._in_file = True, True
            self.filename = filename
            self._fh = self.open_file(filename)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file or self._error:
            return
        self.size += end - start
        if self.size > self.limit:
            self._error = Refused(413, f"the file is larger than the limit of {self.limit >> 20} MB")
            return
        self._fh.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.close()


async def receive_file(stream: AsyncIterator[bytes], content_type: str | None, limit: int,
                       open_file) -> FilePartWriter:
    """Parse a multipart body from `stream`, writing its `file` part through `open_file(filename)`."""
    writer = FilePartWriter(multipart_boundary(content_type), limit, open_file)
    try:
        async for chunk in stream:
            if chunk:
                writer.feed(chunk)
        writer.parser.finalize()
    finally:
        writer.close()
    if not writer.found:
        raise Refused(422, "no file in the form: send the video in a field named 'file'")
    if writer.size == 0:
        raise Refused(400, f"{safe_name(writer.filename)} is empty; choose a video file")
    return writer


def content_length(headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise Refused(400, "bad Content-Length header") from None
    if n < 0:
        raise Refused(400, "bad Content-Length header")
    return n
