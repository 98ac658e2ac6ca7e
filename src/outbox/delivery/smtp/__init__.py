"""The SMTP client: the only package in Outbox that imports aiosmtplib.

A session reports and never decides (STYLE principle 1): it drives MAIL, RCPT
and DATA itself, records every reply in a `DeliveryReport`, and leaves
"permanent or transient" to `core.classify`.

    errors     `SessionError` and `map_smtp_errors`, the one place where foreign
               exceptions (aiosmtplib, OSError, ssl, timeouts) become a `SessionFailure`
    session    `SmtpSession` and `open_session`: connect, EHLO, STARTTLS, AUTH,
               then one message at a time (MAIL, RCPT, DATA), RSET, QUIT
    pipeline   `PipelinedReplies`: the replies to MAIL, RCPT and DATA sent in one write
               (PIPELINING), read in order
    data       the message body on the wire: dot-stuffing, back-pressure with a
               progress deadline, the final "."
    envelope   sender and recipients as they go on the wire; the checks before MAIL
    info       `SessionInfo`: what the relay said about itself during setup
    hostnames  the EHLO name (a bounded FQDN lookup) and the loopback test
    probe      `probe`: set a session up, send nothing, QUIT (doctor, smtp-test)
"""
