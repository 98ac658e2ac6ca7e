"""Files: `POST /v1/uploads` (scope send) streams one file into the blob store;
`GET /d/{token}` (no API key: the signed token is the permission) serves a
file sent as a link. 404 for a token Outbox did not sign, 410 once it expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from outbox.api.auth import Principal, require
from outbox.api.multipart import FILE_FIELD, FORM_TYPE, FormFile, is_form
from outbox.api.schemas import UploadOut
from outbox.core.attachments import TypePolicy, check_type
from outbox.core.filenames import decode_filename
from outbox.service import Outbox
from outbox.views.render import iso

UPLOADS_PATH = "/v1/uploads"

router = APIRouter(prefix="/v1")
downloads = APIRouter()
Sender = Annotated[Principal, Depends(require("send"))]


async def _service(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


Service = Annotated[Outbox, Depends(_service)]


@router.post("/uploads", status_code=201, response_model=UploadOut,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {
                     "type": "string", "format": "binary", "minLength": 1}},
                 FORM_TYPE: {"schema": {
                     "type": "object", "required": [FILE_FIELD], "properties": {
                         FILE_FIELD: {"type": "string", "format": "binary",
                                      "minLength": 1}}}}}}})
async def upload_file(request: Request, outbox: Service, principal: Sender) -> UploadOut:
    """Stream one file (up to [limits] max_attachment_size) as the raw request body, or
    as the form field `file` of a multipart/form-data body (`curl -F file=@PATH`); the
    answer says which it got. Then name it in a message's attachments as `upload_id`."""
    content_type = request.headers.get("content-type", "")
    form = FormFile.of(content_type) if is_form(content_type) else None
    chunks = (_named_as_allowed(form, outbox.messages.limits.types, request.stream()) if form
              else request.stream())
    upload = await outbox.files.upload(principal.name, chunks, outbox.clock())
    return UploadOut(upload_id=upload.id, size=upload.size, sha256=upload.sha256,
                     expires_at=iso(upload.expires_at) or "",
                     received_as="multipart" if form else "raw",
                     filename=form.filename if form else None,
                     content_type=form.content_type if form else None)


async def _named_as_allowed(form: FormFile, policy: TypePolicy,
                            body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The form's file, refused (`AttachmentBlocked`, nothing kept) as soon as its part
    names it with a blocked name, as a message's attachment would be: the name is
    known before the first byte of the file."""
    judged = False
    async for chunk in form.chunks(body):
        if not judged and form.filename:
            check_type(decode_filename(form.filename), (), policy, FILE_FIELD)
        judged = True
        yield chunk


@downloads.get("/d/{token}", include_in_schema=False)
async def download_file(token: str, outbox: Service) -> StreamingResponse:
    ticket, chunks = await outbox.files.download(token, outbox.clock())
    headers = {
        "Content-Length": str(ticket.size),
        "Content-Disposition": content_disposition(ticket.filename),
        # Never rendered on Outbox's own origin, whatever the sender called it.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(chunks, media_type=ticket.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name (RFC 6266, RFC 5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
