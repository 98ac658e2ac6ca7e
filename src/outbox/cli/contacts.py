"""`outbox contacts ...` (the address book) and `outbox route explain`. Each command is a
thin call into `addressbook.ContactBook` or the routing rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox
from outbox.errors import InputError

if TYPE_CHECKING:
    from outbox.core.contact_merge import Report
    from outbox.core.contacts import Member

contacts_app = typer.Typer(no_args_is_help=True, help="The address book: contacts, groups, "
                           "aliases, import, dedupe and directory sync.")
route_app = typer.Typer(no_args_is_help=True, help="Routing rules: which relay carries what.")


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
    app.add_typer(route_app, name="route")


def _print_report(report: Report, applied: bool) -> None:
    for line in report.lines():
        print(line)
    if not applied:
        print("(nothing changed: this was a dry run)")


@contacts_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="a .csv or .vcf file")],
    format: Annotated[str | None, typer.Option("--format", help="csv or vcard; default: by "
                                               "extension or content")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
    config: ConfigOption = None,
) -> None:
    """Import contacts from one .csv or .vcf file; prints the merge report (added,
    merged, unchanged, skipped). A directory is refused, naming its .csv and .vcf files."""
    if file.is_dir():
        raise InputError(f"'{file}' is a directory; contacts import reads one .csv or .vcf "
                         "file", field="file", hint=_importable_in(file))
    if not file.is_file():
        raise InputError(f"'{file}' is not a readable file", field="file")
    data = file.read_bytes()
    report = with_outbox(config, lambda o: o.contacts.import_file(data, file.name, format,
                                                                  not dry_run), migrate=True)
    _print_report(report, applied=not dry_run)


def _importable_in(directory: Path) -> str:
    names = sorted(path.name for path in directory.iterdir() if path.is_file()
                   and path.suffix.lower() in (".csv", ".vcf", ".vcard"))
    if not names:
        return "it holds no .csv or .vcf file: nothing to import"
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"import each of its files: {shown}"


@contacts_app.command("dedupe")
def dedupe(apply: Annotated[bool, typer.Option("--apply", help="merge them (default: only "
                                               "report)")] = False,
           config: ConfigOption = None) -> None:
    """Find contacts that share an address; with --apply, merge each set into one."""
    _print_report(with_outbox(config, lambda o: o.contacts.dedupe(apply), migrate=True),
                  applied=apply)


@contacts_app.command("sync-ldap")
def sync_ldap(full: Annotated[bool, typer.Option("--full", help="read every entry, not only "
                                                 "those changed since the last sync")] = False,
              config: ConfigOption = None) -> None:
    """Bring the directory's contacts up to date (the ldap section of the config)."""
    result = with_outbox(config, lambda o: o.contacts.sync_ldap(full), migrate=True)
    print(f"{'full' if result.full else 'incremental'} sync; cursor {result.cursor or '-'}")
    _print_report(result.report, applied=True)


@contacts_app.command("list")
def list_contacts(limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
                  as_json: Annotated[bool, typer.Option("--json")] = False,
                  config: ConfigOption = None) -> None:
    """Contacts by id: id, name, addresses, tags, source."""
    found = with_outbox(config, lambda o: o.contacts.list_contacts(limit), migrate=True)
    for c in found:
        if as_json:
            print(json.dumps({"id": c.id, "name": c.name, "emails": list(c.emails),
                              "tags": list(c.tags), "source": c.source.value}))
        else:
            tags = f"  [{', '.join(c.tags)}]" if c.tags else ""
            print(f"{c.id}\t{c.name or '-'}\t{', '.join(c.emails)}\t{c.source.value}{tags}")


@contacts_app.command("add")
def add(name: Annotated[str, typer.Option("--name")],
        email: Annotated[list[str], typer.Option("--email", help="repeat for more; the first "
                                                 "is the one groups send to")],
        tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
        config: ConfigOption = None) -> None:
    """Add a contact; prints its id."""
    contact = with_outbox(config, lambda o: o.contacts.add_contact(name, email, tag or []),
                          migrate=True)
    print(contact.id)


@contacts_app.command("group")
def group(name: str,
          members: Annotated[list[str], typer.Argument(help="contact:ID, group:NAME or an "
                                                       "address")],
          description: Annotated[str, typer.Option("--description")] = "",
          config: ConfigOption = None) -> None:
    """Create or replace a group."""
    parsed = tuple(_member(m) for m in members)
    from outbox.core.contacts import Group

    saved = with_outbox(config, lambda o: o.contacts.save_group(Group(name, parsed, description)),
                        migrate=True)
    print(f"{saved.name}: {len(saved.members)} member(s)")


@contacts_app.command("alias")
def alias(name: str, targets: Annotated[list[str], typer.Argument(help="addresses")],
          config: ConfigOption = None) -> None:
    """Create or replace an alias: a name for one or more addresses."""
    from outbox.core.contacts import Alias

    saved = with_outbox(config, lambda o: o.contacts.save_alias(Alias(name, tuple(targets))),
                        migrate=True)
    print(f"{saved.name} -> {', '.join(saved.targets)}")


@contacts_app.command("suggest")
def suggest(prefix: str, limit: Annotated[int, typer.Option("--limit", min=1, max=50)] = 10,
            config: ConfigOption = None) -> None:
    """What autocomplete offers for PREFIX, best first, with usage counts."""
    for s in with_outbox(config, lambda o: o.contacts.suggest(prefix, limit), migrate=True):
        print(f"{s.formatted()}\tused {s.use_count}x")


def _member(text: str) -> Member:
    from outbox.core.contacts import Member

    # Any case, as the UI reads it: "GROUP:Sub" went on as an address, which RFC 5322
    # reads as a group named GROUP holding 'Sub' ("'Sub' is not an email address").
    kind, sep, value = text.partition(":")
    if sep and kind.lower() == "group":
        return Member.group(value)
    if sep and kind.lower() == "contact":
        if not value.isdigit():
            raise InputError(f"{text!r}: a contact member is contact:ID", field="members")
        return Member.contact(int(value))
    return Member.address(text)


@route_app.command("explain")
def route_explain(address: str,
                  relay: Annotated[str | None, typer.Option("--relay", help="as if the client "
                                                            "requested this relay")] = None,
                  config: ConfigOption = None) -> None:
    """Which rule routes ADDRESS to which relay, and whether the internal-domains
    policy would hold it."""
    from outbox.config import load_settings
    from outbox.core import addresses
    from outbox.core.routing import explain_route as explain
    from outbox.service.rules import internal_policy, routing_table

    settings = load_settings(config)
    names = [r.name for r in settings.relays]
    if relay is not None and relay not in names:
        raise InputError(f"no relay is named '{relay}' (known: {', '.join(names) or 'none'})",
                         field="relay")
    parsed = addresses.parse_mailbox(address, "address")
    for line in explain(parsed.addr_spec, routing_table(settings), internal_policy(settings),
                        relay).lines():
        print(line)
