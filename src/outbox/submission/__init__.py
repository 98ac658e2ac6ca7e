"""SMTP submission: an entry point beside the HTTP API, for applications that only
speak SMTP (mail clients, framework mailers, printers, monitoring tools).

    submission.server     the listener: socket, TLS, connection limits, aiosmtpd protocol
    submission.handler    MAIL, RCPT, DATA answered by `outbox.messages`
    submission.auth       AUTH PLAIN/LOGIN with an API key (`outbox.keys`)
    submission.replies    every reply and enhanced code; errors turned into replies

It calls the service like every entry point; the message is read by
`core.inbound`, so it meets the same rules as one posted to /v1/messages.
`outbox serve` runs it when `[submission] bind` is set; `outbox submission`
runs it alone.
"""

from outbox.submission.server import SubmissionListener, bind_socket, tls_context

__all__ = ["SubmissionListener", "bind_socket", "tls_context"]
