"""The ``spotdet`` command line: a thin layer over the library; each ``*_cmd.py`` module adds its commands."""

from __future__ import annotations

import functools
import logging
import sqlite3
import sys
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from spotdet import __version__
from spotdet.errors import SpotdetError, StorageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="spotdet: on-demand, cost-aware object detection on ONNX Runtime.")
models_app = typer.Typer(no_args_is_help=True, help="The model zoo: list models and show their cards.")
app.add_typer(models_app, name="models")

# Piped output gets a wide console so tables are not squeezed to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


# Exit codes of every command (README "Exit codes"): 0 success, 1 failure (a SpotdetError: an unreadable image,
# a model file that fails its checksum, a failed shard, ...), 2 usage mistake, 74 the operating system or SQLite
# refused a read or write (an OSError or a SQLite error: permission denied, read-only file system, not a folder,
# disk full, a damaged database), 75 a batch job stopped by a signal (spotdet.jobs.EXIT_PREEMPTED),
# 130 interrupted (Ctrl-C outside a batch job).
EXIT_IO = StorageError.exit_code  # 74, EX_IOERR in sysexits.h


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def os_error_message(exc: OSError) -> str:
    """``path: reason`` (``path -> other: reason`` for a rename) instead of ``[Errno 13] ...: 'path'``."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {reason}"


def handle_errors(func: Callable) -> Callable:
    """Turn spotdet's typed errors, OSError and SQLite errors into a one-line message and the exit code above."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SpotdetError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:
            fail(os_error_message(exc), EXIT_IO)
        except sqlite3.Error as exc:
            fail(f"SQLite: {exc}", EXIT_IO)
        except KeyboardInterrupt:
            fail("interrupted", 130)
    return wrapper


def _version(value: bool) -> None:
    if value:
        out.print(f"spotdet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens (provider choice, downloads)."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register_commands() -> None:
    """Import every ``spotdet/cli/*_cmd.py``: each registers its commands on ``app`` when imported."""
    import importlib
    import pkgutil

    import spotdet.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"spotdet.cli.{info.name}")


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    # Under ``python -m`` this file runs as __main__; the commands are registered on the app of the
    # importable module ``spotdet.cli.main``, so run that one.
    from spotdet.cli.main import main as _registered_main

    _registered_main()
