"""One exception tree for everything Outbox raises on purpose.

    OutboxError
    ├── ConfigError                 the configuration cannot be used
    ├── InputError                  a user's input is wrong (has .field)
    │   ├── InvalidAddress
    │   ├── HeaderInjection
    │   ├── MessageTooLarge
    │   ├── AttachmentBlocked
    │   ├── TooManyRecipients       over [limits] max_recipients
    │   ├── LimitExceeded           over another named limit ([limits], a key's messages a minute)
    │   ├── IdempotencyKeyReused
    │   ├── MessageIdReused        a client's Message-ID given again to another message
    │   ├── IdempotencyKeyNotSupported  an Idempotency-Key header on a batch (items have keys)
    │   ├── EmptyUpload
    │   ├── BackupInvalid          a backup file that is truncated, altered or not a backup
    │   ├── UnknownUpload          a well-formed upload_id that names no upload (HTTP 404)
    │   ├── CredentialsIncomplete  well-formed, but the relay lacks the rest (HTTP 409)
    │   ├── GroupCycle             the group would contain itself (HTTP 409)
    │   ├── UnknownMember          a group member naming no contact or group (HTTP 404)
    │   ├── MalformedForm          a multipart/form-data body that cannot be read (HTTP 400)
    │   ├── UnsupportedMediaType   a body in a content type the route does not take (HTTP 415)
    │   ├── Suppressed             a recipient is on the suppression list
    │   └── BounceUnreadable       a bounce that cannot be read as a message
    ├── NotFound                    no such message (or relay, contact, ...)
    │   └── LinkInvalid             a download link that Outbox did not sign
    ├── LinkExpired                 a download link past its expiry (HTTP 410)
    ├── Conflict                    the thing exists but is in the wrong state
    │   ├── ConfirmationRequired
    │   ├── IdempotencyInProgress   the first request with the key is still in flight
    │   └── NotConfigured           a feature whose config section is not set (has .key)
    ├── AuthError                   API key missing, unknown or without scope
    │   └── ScopeMissing
    ├── RateLimited                 the API key is over its rate limit (HTTP 429)
    ├── TooBusy                     a per-key or per-server cap on work at once (HTTP 429)
    ├── StorageError                the database failed us
    │   ├── DatabaseUnavailable     down, restarting or locked: nothing stored (HTTP 503)
    │   │   └── CommitUncertain     the connection was lost while committing
    │   ├── LeaseLost               our claim was taken over; the result is stale
    │   └── BlobCorrupt             a stored file is missing or fails its checksum
    ├── DeliveryError               the relay or the network failed us
    │   ├── BodyUnavailable         the message's content could not be read to send
    │   └── LoginNotVerified        new credentials the relay did not accept: not stored
    ├── DirectoryError              the LDAP directory failed us (address-book sync)
    ├── MailboxError                the bounce mailbox (IMAP) failed us
    └── ProcessExited               a delivery process of `outbox serve` ended by itself

Each class's docstring is its default one-line message; `hint` is the next step.
Foreign exceptions are translated once per adapter, with `raise ... from exc`.
"""

from __future__ import annotations


class OutboxError(Exception):
    """Outbox failed."""

    hint: str = ""
    code: str = "error"

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        if hint is not None:
            self.hint = hint
        super().__init__(self.message)

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(OutboxError):
    """The configuration is not valid."""

    code = "config_invalid"
    hint = "fix the named key in the config file or its OUTBOX_ environment variable"


class InputError(OutboxError):
    """The input is not valid."""

    code = "invalid_input"
    status = 422

    def __init__(self, message: str | None = None, *, field: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class InvalidAddress(InputError):
    """The email address is not valid."""

    code = "invalid_address"


class HeaderInjection(InputError):
    """A header name or value contains a line break (CR or LF)."""

    code = "header_injection"


class MessageTooLarge(InputError):
    """The message is larger than the configured limit."""

    code = "message_too_large"
    status = 413


class AttachmentBlocked(InputError):
    """The attachment's type is not allowed."""

    code = "attachment_blocked"


class TooManyRecipients(InputError):
    """The message has more recipients than the configured limit."""

    code = "too_many_recipients"
    hint = "raise [limits] max_recipients, or send the list in parts with POST /v1/messages/batch"


class LimitExceeded(InputError):
    """The request is over a configured limit."""

    code = "limit_exceeded"


class IdempotencyKeyReused(InputError):
    """This Idempotency-Key was already used with a different request body."""

    code = "idempotency_key_reused"
    hint = "use a new Idempotency-Key for a different message"


class IdempotencyKeyNotSupported(InputError):
    """A batch takes an idempotency key per item, not an Idempotency-Key header."""

    code = "idempotency_key_not_supported"
    hint = "send the batch again without the Idempotency-Key header"


class MessageIdReused(InputError):
    """This Message-ID was already given to another message by the same API key."""

    code = "message_id_reused"
    hint = ("give each message its own Message-ID, or none (Outbox makes one); "
            "[delivery] dedupe_message_id = false turns this check off")


class EmptyUpload(InputError):
    """The upload is empty."""

    code = "empty_upload"
    hint = "send the file as the request body, or as the form field 'file' (curl -F file=@PATH)"


class BackupInvalid(InputError):
    """The file is not a sound Outbox backup."""

    code = "backup_invalid"
    hint = "nothing was changed; restore from another copy of the backup, or take a new one"


class UnknownUpload(InputError):
    """No upload has this id."""

    code = "upload_not_found"
    status = 404
    hint = ("uploads are kept for [storage] upload_ttl: upload the file again with "
            "POST /v1/uploads and send its upload_id")


class CredentialsIncomplete(InputError):
    """The relay's login would be incomplete."""

    code = "credentials_incomplete"
    status = 409
    hint = "give what the relay does not have yet (PUT /v1/relays/{name}/credentials)"


class GroupCycle(InputError):
    """The group would contain itself."""

    code = "group_cycle"
    status = 409
    hint = "remove the member that leads back to this group"


class UnknownMember(InputError):
    """A group member names a contact or group that does not exist."""

    code = "member_not_found"
    status = 404
    hint = "add the contact or group first, or name an address"


class MalformedForm(InputError):
    """The multipart/form-data body cannot be read."""

    code = "invalid_form"
    status = 400
    hint = "send one file as the form field 'file' (curl -F file=@PATH), or the raw bytes"


class UnsupportedMediaType(InputError):
    """This route takes a JSON body."""

    code = "unsupported_media_type"
    status = 415
    hint = "send the body with 'Content-Type: application/json'"


class Suppressed(InputError):
    """The recipient is on the suppression list."""

    code = "suppressed"
    hint = ("remove the address with `outbox suppress rm ADDRESS` (or DELETE "
            "/v1/suppressions/ADDRESS) if it can receive mail again")


class BounceUnreadable(InputError):
    """The bounce could not be read as an email message."""

    code = "bounce_unreadable"


class NotFound(OutboxError):
    """Not found."""

    code = "not_found"


class Conflict(OutboxError):
    """The request conflicts with the current state."""

    code = "conflict"


class ConfirmationRequired(Conflict):
    """This message was already delivered; resending needs confirmation."""

    code = "confirmation_required"
    hint = "resend with confirm=true (API) or --yes (CLI) if a second copy is really wanted"


class IdempotencyInProgress(Conflict):
    """The first request with this key is still being processed; retry after it answers."""

    code = "idempotency_key_in_flight"
    hint = "retry in a moment: the retry answers with the first request's message"


class NotConfigured(Conflict):
    """This feature is not configured."""

    code = "not_configured"

    def __init__(self, message: str | None = None, *, key: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"set {key} in the config file")
        self.key = key  # the config key to set, e.g. "ldap.url"


class AuthError(OutboxError):
    """Missing or unknown API key."""

    code = "unauthorized"
    hint = "send 'Authorization: Bearer <api key>' with a key from [auth] api_keys"


class ScopeMissing(AuthError):
    """The API key lacks the scope this request needs."""

    code = "forbidden"
    hint = "use a key that has the needed scope"


class RateLimited(OutboxError):
    """This API key is over its rate limit."""

    code = "rate_limited"
    hint = "wait for Retry-After seconds, or ask for a higher limit for this key"

    def __init__(self, message: str | None = None, *, retry_after: int, limit: int,
                 remaining: int = 0, reset: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after  # whole seconds until the request can succeed
        self.limit = limit  # per minute
        self.remaining = remaining
        self.reset = reset  # whole seconds until the whole minute's worth is back


class TooBusy(OutboxError):
    """Too much of this work is under way at once; try again shortly."""

    code = "too_busy"

    def __init__(self, message: str | None = None, *, retry_after: int = 1,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class StorageError(OutboxError):
    """The database failed."""

    code = "storage_error"
    hint = "check that the database is reachable and the disk is not full"


class DatabaseUnavailable(StorageError):
    """The database cannot be reached (down, restarting or locked); nothing was stored."""

    code = "database_unavailable"
    hint = "nothing was stored; try again in a few seconds"
    # Seconds: a PostgreSQL restart took 2-3 s (pg_ctlcluster restart, measured); longer
    # keeps clients waiting after it, shorter brings them back while it is still down.
    retry_after = 5


class CommitUncertain(DatabaseUnavailable):
    """The connection to the database was lost while committing: this may be stored."""

    hint = "look before doing it again; a retry with the same Idempotency-Key is safe either way"


class LeaseLost(StorageError):
    """The claim on this message was lost before the result was recorded."""

    code = "lease_lost"


class BlobCorrupt(StorageError):
    """A stored file is missing or no longer matches its checksum."""

    code = "attachment_corrupt"
    hint = "upload the file again; check the disk or database that holds the blobs"


class LinkInvalid(NotFound):
    """No such download link."""

    code = "not_found"


class LinkExpired(OutboxError):
    """This download link has expired."""

    code = "link_expired"
    hint = "ask the sender for the file again"


class DeliveryError(OutboxError):
    """Delivery failed."""

    code = "delivery_error"


class LoginNotVerified(DeliveryError):
    """The relay did not accept the login; nothing was stored."""

    code = "login_not_verified"
    hint = ("check them by signing in outside Outbox (with MFA, use an app password), then "
            "set them again")


class BodyUnavailable(DeliveryError):
    """The message's content could not be read to send it."""

    code = "body_unavailable"

    def __init__(self, message: str | None = None, *, condition: str) -> None:
        super().__init__(message)
        self.condition = condition  # a report.Condition value: attachment_corrupt, ...


class DirectoryError(OutboxError):
    """The LDAP directory could not be read."""

    code = "directory_error"
    hint = "check [ldap] url, bind_dn and bind_password, and that the directory is reachable"


class MailboxError(OutboxError):
    """The bounce mailbox (IMAP) could not be read."""

    code = "mailbox_error"
    hint = "check [bounces.imap] host, port, security and credentials"


class ProcessExited(OutboxError):
    """A delivery process of `outbox serve` ended by itself."""

    code = "process_exited"
    hint = "serve starts it again; its own log lines say why it ended"
