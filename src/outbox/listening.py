"""Listening sockets for the HTTP API, SMTP submission and the bounce intake.

Bound at start-up, before anything else starts, so that a taken port is one clear
line. Made as TCP sockets (protocol IPPROTO_TCP, not `socket.create_server`'s 0): the
event loop turns Nagle's algorithm off only on connections accepted from such a
socket, and without that every keep-alive HTTP request and every multi-write SMTP
reply waited for the client's delayed ACK (about 40 ms each).
"""

from __future__ import annotations

import errno
import socket

from outbox.errors import ConfigError


def listen(section: str, bind: str, host: str, port: int, *, backlog: int) -> socket.socket:
    """A socket listening on (host, port) for `[section] bind = "<bind>"`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{section}.bind: {bind} is already in use by another program",
                              hint=f"stop it, or choose another address with [{section}] bind "
                                   f"or OUTBOX_{section.upper()}__BIND") from None
        raise ConfigError(f"{section}.bind: cannot listen on {bind}: {exc.strerror or exc}",
                          hint=f"choose another address with [{section}] bind") from None
    return sock
