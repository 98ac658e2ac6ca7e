"""`outbox dkim keygen|records`: DKIM signing keys and the DNS TXT records that publish
them (`[[dkim.keys]]` in the config names the key file)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from outbox.cli.common import ConfigOption, fail, load
from outbox.errors import InputError

LDH_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 5321 sub-domain
SELECTOR_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
dkim_app = typer.Typer(no_args_is_help=True, help="DKIM signing keys and their DNS records")


def register(app: typer.Typer) -> None:
    app.add_typer(dkim_app, name="dkim")


@dkim_app.command("keygen")
def keygen(
    domain: Annotated[str, typer.Argument(help="the From domain the key signs for")],
    selector: Annotated[str, typer.Option("--selector", help="s=: the record is "
                                          "<selector>._domainkey.<domain>")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where the private key "
                                         "(PEM) is written, mode 0600")],
    algorithm: Annotated[Literal["rsa-sha256", "ed25519-sha256"], typer.Option(
        "--algorithm", help="rsa-sha256 (RSA 2048) or ed25519-sha256")] = "rsa-sha256",
    config: Annotated[str | None, typer.Option(
        "--config", "-c", help="the config file the key is for (default: $OUTBOX_CONFIG, "
        "then ./outbox.toml, if any): a selector its [[dkim.keys]] already use for DOMAIN "
        "is refused; the file is only read")] = None,
) -> None:
    """Make a key; print the TXT record to publish and the [[dkim.keys]] entry."""
    from outbox.service.dkim import new_key

    _check_names(domain, selector)
    _refuse_configured_selector(config, domain, selector)
    if output.exists():
        fail(f"{output} exists already; choose another path (a key is never overwritten)")
    if not output.parent.is_dir():
        raise InputError(f"the directory {output.parent} does not exist", field="output")
    pem, record = new_key(domain, selector, algorithm)
    _write_private(output, pem)
    print(f"{record.name}. IN TXT \"{record.value}\"")
    print(f'[[dkim.keys]]\ndomain = "{domain}"\nselector = "{selector}"\n'
          f'algorithm = "{algorithm}"\nprivate_key = "file:{output.resolve()}"')


def _check_names(domain: str, selector: str) -> None:
    """The record's name is <selector>._domainkey.<domain>: both must be DNS names."""
    if not _is_dns_name(domain, LDH_LABEL):
        raise InputError(f"{domain!r} is not a domain name", field="domain",
                         hint="give the From domain, e.g. example.com; an international "
                              "one in its xn-- form")
    if not _is_dns_name(selector, SELECTOR_LABEL):
        raise InputError(f"--selector: {selector!r} is not a DNS name", field="selector",
                         hint="use letters, digits, '-' and '_', labels joined by '.', "
                              "e.g. s2026")


def _refuse_configured_selector(config: str | None, domain: str, selector: str) -> None:
    """A new record under a selector in use would replace the public key that the mail
    already signed with the configured key is checked against."""
    path, entries = _configured_keys(config)
    for entry in entries:
        if (str(entry.get("domain", "")).lower(), str(entry.get("selector", "")).lower()) \
                == (domain.lower(), selector.lower()):
            raise InputError(f"--selector: {path} already has a key under selector "
                             f"'{selector}' for {domain}", field="selector",
                             hint="choose a new selector and switch the config to it once "
                                  "its record is published, or remove that [[dkim.keys]] "
                                  "entry first")


def _configured_keys(config: str | None) -> tuple[Path | None, list[dict[str, object]]]:
    """The config file's [[dkim.keys]] entries as written: its secrets are not resolved,
    so a key file that is gone (the reason for a new key) is no error here."""
    import tomllib

    from outbox.config import find_config_path
    from outbox.errors import ConfigError

    path = find_config_path(config)
    if path is None:
        return None, []
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as TOML ({exc})") from None
    dkim = values.get("dkim")
    keys = dkim.get("keys") if isinstance(dkim, dict) else None
    return path, [key for key in keys if isinstance(key, dict)] if isinstance(keys, list) else []


def _is_dns_name(name: str, label: re.Pattern[str]) -> bool:
    return len(name) <= 253 and all(label.fullmatch(part) for part in name.split("."))


def _write_private(output: Path, pem: str) -> None:
    """The key, readable by its owner only; never over an existing file."""
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}", field="output") from exc
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pem)


@dkim_app.command("records")
def records(config: ConfigOption = None) -> None:
    """The TXT record each configured key needs, one line each."""
    from outbox.service.dkim import configured_records

    for record in configured_records(load(config)):
        print(f"{record.name}. IN TXT \"{record.value}\"")
