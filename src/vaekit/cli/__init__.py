"""The ``vaekit`` command. Thin: parses options, calls the library, prints where things went.

A user's mistake (bad path, bad file, bad flag) prints one line, ``error: ...``, and exits with code 2.
"""
from __future__ import annotations

import sys

import click

from .. import distributed
from . import analyse, generate, serve, train  # noqa: F401  (they register their commands)
from .base import cli


def main(argv: list[str] | None = None) -> None:
    """The console script: every user error is one line on stderr with exit code 2."""
    try:
        _run(argv)
    finally:
        distributed.shutdown()


def _run(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="vaekit", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
