"""The ``spotdet`` command line: a thin layer over the library; each ``*_cmd.py`` module adds its commands."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from spotdet import __version__
from spotdet.errors import SpotdetError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="spotdet: on-demand, cost-aware object detection on ONNX Runtime.")
models_app = typer.Typer(no_args_is_help=True, help="The model zoo: list models and show their cards.")
app.add_typer(models_app, name="models")

# Piped output gets a wide console so tables are not squeezed to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(func: Callable) -> Callable:
    """Turn spotdet's typed errors into a one-line message and the matching exit code."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SpotdetError as exc:
            fail(str(exc), exc.exit_code)
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
