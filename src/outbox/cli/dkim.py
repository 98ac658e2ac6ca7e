"""`outbox dkim keygen|records`: DKIM signing keys and the DNS TXT records that publish
them (`[[dkim.keys]]` in the config names the key file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from outbox.cli.common import ConfigOption, fail, load

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
) -> None:
    """Make a key; print the TXT record to publish and the [[dkim.keys]] entry."""
    from outbox.service.dkim import new_key

    if output.exists():
        fail(f"{output} exists already; choose another path (a key is never overwritten)")
    pem, record = new_key(domain, selector, algorithm)
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pem)
    print(f"{record.name}. IN TXT \"{record.value}\"")
    print(f'[[dkim.keys]]\ndomain = "{domain}"\nselector = "{selector}"\n'
          f'algorithm = "{algorithm}"\nprivate_key = "file:{output.resolve()}"')


@dkim_app.command("records")
def records(config: ConfigOption = None) -> None:
    """The TXT record each configured key needs, one line each."""
    from outbox.service.dkim import configured_records

    for record in configured_records(load(config)):
        print(f"{record.name}. IN TXT \"{record.value}\"")
