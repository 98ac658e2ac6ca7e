"""Attachments at submit: names, types, sizes, inline images. Pure; no I/O.

A file's bytes reach the core as a `FileInfo` (size, sha256, and what its
first bytes look like, `sniffed`), worked out at the edge from an upload in
the blob store or from `content_base64`. The type policy refuses, naming the
file and the rule:

- a blocked extension, where the last extension decides as it does on
  Windows ('invoice.pdf.exe' is an .exe; trailing dots and spaces do not
  hide it), or, in allow-list mode, any extension not on the list;
- content of a type the policy refuses behind a name that says otherwise: a
  Windows executable renamed 'report.pdf' (sniffed `.exe`). When the content
  could be several types (an OLE file may be .doc or .msi), it is refused
  only if the policy permits none of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from outbox.core.filenames import as_c_string
from outbox.core.mime_types import ATTACHED_MESSAGE, OWN_PARAMS, bare_type, parse_content_type
from outbox.errors import AttachmentBlocked, InputError, MessageTooLarge

WINDOWS_EXECUTABLE = ".exe"
_LINE_BREAK = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 restricted-name
CONTENT_ID_CHARS = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-"  # a regex class's inside
_CONTENT_ID = re.compile(f"[{CONTENT_ID_CHARS}]{{1,200}}")
_DOS_STUB = b"This program cannot be run in DOS mode"


@dataclass(frozen=True, slots=True)
class AttachmentIn:
    """One attachment as a user gave it: the bytes inline (`content_base64`) or
    as an earlier upload (`upload_id`). With `content_id` it is an inline
    image of the HTML body (`<img src="cid:...">`)."""

    filename: str
    content_base64: str = ""
    content_type: str = "application/octet-stream"
    upload_id: str | None = None
    content_id: str | None = None
    # The whole body of signed or encrypted mail (`core.inbound`), sent as it came: its
    # `content_type` is the message's own, boundary and all.
    sealed: bool = False


@dataclass(frozen=True, slots=True)
class FileInfo:
    sha256: str
    size: int
    sniffed: tuple[str, ...] = ()  # extensions the content looks like, e.g. (".exe",)
    # 7bit lines (`core.mime_types.SevenBitLines`), worked out for attached messages only:
    # one that is not goes as application/octet-stream
    seven_bit: bool = False


@dataclass(frozen=True, slots=True)
class TypePolicy:
    mode: str = "block"  # "block": refuse `blocked`; "allow": refuse all but `allowed`
    blocked: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()

    def permits(self, extension: str) -> bool:
        if self.mode == "allow":
            return extension in _normalised(self.allowed)
        return extension not in _normalised(self.blocked)

    @property
    def setting(self) -> str:
        return "limits.allowed_extensions" if self.mode == "allow" else (
            "limits.blocked_extensions")


def _normalised(extensions: frozenset[str]) -> frozenset[str]:
    return frozenset("." + e.lower().lstrip(".") for e in extensions)


# --- the bytes -----------------------------------------------------------------------------

def is_attached_message(attachment: AttachmentIn) -> bool:
    """A forwarded message (message/rfc822): its bytes decide how it is sent."""
    return bare_type(attachment.content_type) == ATTACHED_MESSAGE


def decode_base64(attachment: AttachmentIn, where: str) -> bytes:
    return base64_field(attachment.content_base64, f"{where}.content_base64",
                        "content_base64 is not valid base64")


def base64_field(text: str, field: str, refusal: str) -> bytes:
    """Line-wrapped base64 (as `base64` prints it) is fine; other junk is `refusal`,
    naming `field`."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(refusal, field=field) from None


def file_info(data: bytes, sniffed: tuple[str, ...] = ()) -> FileInfo:
    return FileInfo(hashlib.sha256(data).hexdigest(), len(data), sniffed)


def is_windows_executable(head: bytes) -> bool:
    """A DOS/Windows executable (PE: .exe, .dll, .scr, ...) by its first bytes:
    'MZ', then the PE signature where the header points, or the DOS stub."""
    if head[:2] != b"MZ" or len(head) < 0x40:
        return False
    offset = int.from_bytes(head[0x3C:0x40], "little")
    if 4 <= offset <= len(head) - 4 and head[offset:offset + 4] == b"PE\0\0":
        return True
    return _DOS_STUB in head[:0x400]


# --- the checks ----------------------------------------------------------------------------

def check_attachment(attachment: AttachmentIn, info: FileInfo, policy: TypePolicy,
                     max_size: int, where: str) -> None:
    """Raise on the first problem, naming the field. `attachment.filename` is already
    decoded (`core.filenames.decode_filename`)."""
    name = attachment.filename
    if as_c_string(name) != name:  # 'evil.js\0.txt' is judged as 'evil.js' too
        check_type(as_c_string(name), info.sniffed, policy, f"{where}.filename")
    if not name or _LINE_BREAK.search(name) or "/" in name or "\\" in name:
        raise InputError("the filename is empty or has a line break or a path",
                         field=f"{where}.filename")
    check_type(name, info.sniffed, policy, f"{where}.filename")
    check_content_type(attachment.content_type, f"{where}.content_type")
    if attachment.content_id is not None and not _CONTENT_ID.fullmatch(attachment.content_id):
        raise InputError("content_id must be 1 to 200 characters of letters, digits and "
                         "!#$%&'*+/=?^_`{|}~.@- (it is used as cid:<content_id>)",
                         field=f"{where}.content_id")
    if info.size > max_size:
        raise MessageTooLarge(f"'{name}' is {info.size:,} bytes, over the limit of "
                              f"{max_size:,} (limits.max_attachment_size)", field=where)


def last_extension(name: str) -> str:
    """'.exe' for 'invoice.pdf.exe' and 'invoice.exe. '; '' without an extension."""
    stem = name.rstrip(". ").lower()
    _, dot, extension = stem.rpartition(".")
    return f".{extension}" if dot else ""


def check_type(name: str, sniffed: Sequence[str], policy: TypePolicy, where: str) -> None:
    extension = last_extension(name)
    if policy.mode == "allow" and not policy.permits(extension):
        allowed = ", ".join(sorted(_normalised(policy.allowed))) or "none"
        raise AttachmentBlocked(f"'{name}' is blocked: only files ending in {allowed} are "
                                f"allowed ({policy.setting})", field=where)
    if extension and not policy.permits(extension):
        raise AttachmentBlocked(f"'{name}' is blocked: files ending in {extension} are not "
                                f"allowed ({policy.setting})", field=where)
    if sniffed and extension not in sniffed and not any(map(policy.permits, sniffed)):
        raise AttachmentBlocked(f"'{name}' is blocked: its content is {_kind(sniffed[0])}, "
                                f"whatever its name says ({policy.setting}, checked by "
                                "content)", field=where)


def _kind(extension: str) -> str:
    if extension == WINDOWS_EXECUTABLE:
        return "a Windows executable (.exe)"
    return f"a {extension} file"


def check_content_type(content_type: str, where: str) -> None:
    """`type/subtype`, optionally with parameters (`core.mime_types`); a file is never
    multipart, and its `name` is Outbox's to write, from the filename."""
    if not content_type:
        return
    bare, params = parse_content_type(content_type, where)
    if bare.lower().startswith("multipart/"):
        raise InputError("content_type multipart/* is not a file type", field=where)
    if any(key in OWN_PARAMS for key, _ in params):
        raise InputError("leave the name parameter out of content_type: Outbox sets it from "
                         "filename", field=where)
