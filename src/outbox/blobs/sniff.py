"""What a file's first bytes say it is: for the type policy's content check.

A Windows executable (PE or DOS: .exe, .dll, .scr, ...) is reported as
`.exe` whatever its name; other types come from puremagic's signatures of at
least four bytes (shorter ones match random data too often). The rules that
decide live in `core.attachments.check_type`.
"""

from __future__ import annotations

import puremagic

from outbox.core.attachments import WINDOWS_EXECUTABLE, is_windows_executable

SNIFF_BYTES = 4096
_MIN_SIGNATURE = 4
_EXECUTABLES = frozenset({".exe", ".dll", ".drv", ".sys", ".scr", ".ocx", ".cpl", ".com",
                          ".efi", ".acm", ".ax", ".mui", ".tsp", ".386", ".vxd"})


def sniff(head: bytes) -> tuple[str, ...]:
    """Extensions the content looks like, most likely first; () when unknown."""
    if not head:
        return ()
    if is_windows_executable(head):
        return (WINDOWS_EXECUTABLE,)
    try:
        matches = puremagic.magic_string(head[:SNIFF_BYTES])
    except (puremagic.PureError, ValueError):
        return ()
    found = [m.extension.lower() for m in matches
             if m.extension and len(m.byte_match) >= _MIN_SIGNATURE]
    if any(extension in _EXECUTABLES for extension in found):
        return (WINDOWS_EXECUTABLE,)
    return tuple(dict.fromkeys(found))
