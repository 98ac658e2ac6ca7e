"""JSON Schema for what the service checks beyond a field's type, so that the OpenAPI
document says what is accepted: a request it calls valid is accepted, one it calls
invalid is refused (schemathesis checks both, `tests/api/test_fuzz.py`).

The service keeps its own checks and their errors (`header_injection` naming the field,
`attachment_blocked`, ...); these fragments only describe them. What depends on the
configuration (the relays' names, the blocked extensions) is written into the document
when the app is built (`describe_settings`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI

from outbox.core.attachments import CONTENT_ID_CHARS, MIME_NAME
from outbox.core.contacts import NAME_MAX, NAME_PATTERN
from outbox.core.mime import RESERVED_HEADERS

Schema = dict[str, Any]

# Every character the service refuses in a header as a line break (core.compose).
_BREAKS = r"\r\n\u0000\u000b\u000c\u001c\u001d\u001e\u0085\u2028\u2029"

ADDRESS: Schema = {"format": "email"}
# In to, cc, bcc and reply_to an empty string is no address (and no error).
RECIPIENTS: Schema = {"anyOf": [ADDRESS, {"maxLength": 0}]}
# A group's or alias's name, as core.contacts.check_name reads it.
NAME: Schema = {"pattern": NAME_PATTERN, "maxLength": NAME_MAX}
ONE_LINE: Schema = {"pattern": rf"^[^{_BREAKS}]*$"}
FILENAME_PATTERN = rf"^[^/\\{_BREAKS}]+$"
CONTENT_ID_PATTERN = rf"^[{CONTENT_ID_CHARS}]{{1,200}}$"
# An upload's id as POST /v1/uploads makes it: "up_" and 18 random bytes in base64url.
UPLOAD_ID_PATTERN = r"^up_[A-Za-z0-9_-]{24}$"


def any_case(word: str) -> str:
    """A regex for `word` in any letter case, without flags (JSON Schema has none)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = rf'[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"(?:[ !#-\[\]-~]|\\[ -~])*")'
# type/subtype and parameters (core.mime_types.parse_content_type reads them)
CONTENT_TYPE: Schema = {
    "pattern": f"^(?:{MIME_NAME}/{MIME_NAME}(?:{_PARAM})*[ \t]*)?$",
    "not": {"pattern": f"^{any_case('multipart')}/"},
}

_RESERVED = sorted(RESERVED_HEADERS - {"message-id"})
HEADERS: Schema = {
    "propertyNames": {
        "pattern": r"^[!-9;-~]{1,76}$",  # printable ASCII but ':' (RFC 5322 ftext)
        "not": {"pattern": f"^(?:{'|'.join(any_case(name) for name in _RESERVED)})$"},
    },
    "patternProperties": {f"^{any_case('message-id')}$": {
        "type": "string", "pattern": r"^[ \t]*<[!-;=?A-~]+@[!-;=?A-~]+>[ \t]*$"}},
    "additionalProperties": {"type": "string", **ONE_LINE},
}

# An address-book file (addressbook.importers). CSV: a header line with a column whose
# name has "mail" in it (and neither "type" nor "label": the letters t and l are kept out
# of it here), no NUL, lines ending in LF. vCard: one BEGIN:VCARD ... END:VCARD at least.
_CELL = r'[^\x00\r\n",]*'
_MAIL_CELL = r'[^\x00\r\n",tTlL]*'
CSV_FILE = (rf"^(?:{_CELL},)*{_MAIL_CELL}{any_case('mail')}{_MAIL_CELL}"
            rf"(?:,{_CELL})*(?:\n[^\x00\r]*)?$")
VCARD_FILE = (rf"(?:^|\n){any_case('begin:vcard')}[ \t\r]*\n(?:[\s\S]*\n)?"
              rf"{any_case('end:vcard')}[ \t\r]*(?:\n|$)")

_STRING: Schema = {"type": "string"}
_NULL: Schema = {"type": "null"}
_NOT_EMPTY: Schema = {"anyOf": [{"type": "array", "contains": {"minLength": 1}},
                                {"type": "string", "minLength": 1}]}
RECIPIENT_GIVEN: Schema = {"anyOf": [{"required": [name], "properties": {name: _NOT_EMPTY}}
                                     for name in ("to", "cc", "bcc")]}
_HTML: Schema = {"required": ["html"], "properties": {"html": _STRING}}
BODY_GIVEN: Schema = {"anyOf": [{"required": ["text"], "properties": {"text": _STRING}}, _HTML]}
INLINE_NEEDS_HTML: Schema = {"anyOf": [_HTML, {"properties": {"attachments": {
    "items": {"properties": {"content_id": _NULL}}}}}]}
ONE_SOURCE: Schema = {"anyOf": [
    {"required": ["content_base64"],
     "properties": {"content_base64": _STRING, "upload_id": _NULL}},
    {"required": ["upload_id"], "properties": {"upload_id": _STRING, "content_base64": _NULL}},
]}


def extension_rule(mode: str, blocked: Iterable[str], allowed: Iterable[str]) -> Schema:
    """The filenames [limits] lets through, as `last_extension` reads a name: case and
    trailing dots and spaces do not matter."""
    def ending(extensions: Iterable[str]) -> str:
        names = sorted({e.lower().lstrip(".") for e in extensions if e.strip(". ")})
        return rf"\.(?:{'|'.join(any_case(n) for n in names)})[. ]*$"

    if mode == "allow":
        return {"pattern": ending(allowed)}
    names = [e for e in blocked if e.strip(". ")]
    return {"not": {"pattern": ending(names)}} if names else {}


def describe_settings(document: Schema, relays: list[str], extensions: Schema,
                      max_batch: int) -> None:
    """Write the configured relay names, extension rule and webhook batch size into a
    built document."""
    schemas = document.get("components", {}).get("schemas", {})
    for schema in schemas.values():
        properties = schema.get("properties", {})
        if "relay" in properties and "from" in properties:  # MessageIn, BatchMessageIn
            properties["relay"] = {"anyOf": [{"type": "string", "enum": relays}, _NULL],
                                   "description": properties["relay"].get("description", "")}
    filename = schemas.get("AttachmentModel", {}).get("properties", {}).get("filename")
    if filename is not None and extensions:
        filename["allOf"] = [extensions]
    batch_size = schemas.get("EndpointIn", {}).get("properties", {}).get("batch_size")
    if batch_size is not None:
        batch_size["maximum"] = max_batch



def install(app: FastAPI, relays: list[str], extensions: Schema, max_batch: int) -> None:
    """Make `app.openapi()` describe this configuration."""
    build = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            describe_settings(build(), relays, extensions, max_batch)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
