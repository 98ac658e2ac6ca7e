"""`POST /v1/uploads` as a form (`curl -F file=@x`): the one file part of a
multipart/form-data body, streamed out as it arrives (never the whole body in
memory), byte-identical to the file; the other fields are ignored.

    form = FormFile.of(content_type)          # MalformedForm without a boundary
    await store(form.chunks(request.stream()))
    form.filename, form.content_type          # known once the part's headers came
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from outbox.errors import MalformedForm

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FORM_TYPE = "multipart/form-data"
FILE_FIELD = "file"


def is_form(content_type: str) -> bool:
    return parse_options_header(content_type)[0] == FORM_TYPE.encode()


class FormFile:
    """The file part of one form body, with its name and type once seen."""

    def __init__(self, boundary: bytes) -> None:
        self.filename: str | None = None
        self.content_type: str | None = None
        self._boundary = boundary
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._in_file = False
        self._files = 0
        self._ended = False
        self._pending: list[bytes] = []

    @classmethod
    def of(cls, content_type: str) -> FormFile:
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            raise MalformedForm("the multipart/form-data Content-Type has no boundary")
        return cls(boundary)

    async def chunks(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The file's bytes, as the body arrives."""
        parser = MultipartParser(self._boundary, self._callbacks())
        try:
            async for piece in body:
                parser.write(piece)
                if self._pending:
                    yield b"".join(self._pending)
                    self._pending.clear()
            parser.finalize()
        except FormParserError as exc:
            raise MalformedForm(f"the multipart/form-data body cannot be read: {exc}") from exc
        if not self._ended:
            raise MalformedForm("the multipart/form-data body ends before its closing boundary")
        if self._files == 0:
            raise MalformedForm(f"the form has no file; send it as the field '{FILE_FIELD}'")
        if self._pending:
            yield b"".join(self._pending)

    def _callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._end, "on_end": self._finished}

    def _begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name, filename = options.get(b"name"), options.get(b"filename")
        if filename is None and name != FILE_FIELD.encode():
            return  # an ordinary form field
        self._files += 1
        if self._files > 1:
            raise MalformedForm("the form has more than one file; upload one file at a time")
        self._in_file = True
        self.filename = filename.decode("utf-8", "replace") if filename is not None else None
        kind = self._headers.get(b"content-type")
        self.content_type = kind.decode("latin-1").strip() if kind else None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(bytes(data[start:end]))

    def _end(self) -> None:
        self._in_file = False

    def _finished(self) -> None:
        self._ended = True
