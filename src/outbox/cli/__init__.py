"""The `outbox` command line: a thin layer over `service.Outbox`.

`common` holds what every command shares (--config, settings and logging, the one
`with_outbox` helper, errors as one line; `existing`: the database a command may open);
each command group is a module that imports only `common` (and `tables` to print);
`app` builds the Typer app from the groups.
The long-running `serve` and `worker` are added by `outbox.main`, so this package never
imports the HTTP API or the runtime.
"""
