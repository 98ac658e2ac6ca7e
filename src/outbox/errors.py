"""One exception tree for everything Outbox raises on purpose.

    OutboxError
    ├── ConfigError                 the configuration cannot be used
    ├── InputError                  a user's input is wrong (has .field)
    │   ├── InvalidAddress
    │   ├── HeaderInjection
    │   ├── MessageTooLarge
    │   ├── AttachmentBlocked
    │   └── IdempotencyKeyReused
    ├── NotFound                    no such message (or relay, contact, ...)
    │   └── LinkInvalid             a download link that Outbox did not sign
    ├── LinkExpired                 a download link past its expiry (HTTP 410)
    ├── Conflict                    the thing exists but is in the wrong state
    │   ├── ConfirmationRequired
    │   └── IdempotencyInProgress
    ├── AuthError                   API key missing, unknown or without scope
    │   └── ScopeMissing
    ├── StorageError                the database failed us
    │   ├── LeaseLost               our claim was taken over; the result is stale
    │   └── BlobCorrupt             a stored file is missing or fails its checksum
    ├── DeliveryError               the relay or the network failed us
    │   └── BodyUnavailable         the message's content could not be read to send
    └── DirectoryError              the LDAP directory failed us (address-book sync)

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


class IdempotencyKeyReused(InputError):
    """This Idempotency-Key was already used with a different request body."""

    code = "idempotency_key_reused"
    hint = "use a new Idempotency-Key for a different message"


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
    """A request with this Idempotency-Key is still being processed."""

    code = "idempotency_in_progress"
    hint = "retry the request in a moment"


class AuthError(OutboxError):
    """Missing or unknown API key."""

    code = "unauthorized"
    hint = "send 'Authorization: Bearer <api key>' with a key from [auth] api_keys"


class ScopeMissing(AuthError):
    """The API key lacks the scope this request needs."""

    code = "forbidden"
    hint = "use a key that has the needed scope"


class StorageError(OutboxError):
    """The database failed."""

    code = "storage_error"
    hint = "check that the database is reachable and the disk is not full"


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
