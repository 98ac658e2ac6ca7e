"""The SMTP delivery edge: sessions to relays, pooled, reporting every reply.

`pool.SessionPool.deliver` is what the worker calls; `smtp.probe.probe` is what
`outbox doctor` and `outbox relay test` call. Only `delivery.smtp` imports aiosmtplib.
The package re-exports nothing, so that a module that needs one part (the DKIM signer,
the credential vault) does not load the SMTP and HTTP clients of all the others.
"""
