"""``spotdet models list|info``: the zoo as a table and one model's card."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.table import Table

from spotdet.cli.main import handle_errors, models_app, out
from spotdet.models.card import get_card, zoo
from spotdet.models.store import find_local
from spotdet.models.verify import MISMATCH, OK, checksum_state, file_sha256


def _fmt(value, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _size_mb(card) -> str:
    path = find_local(card)
    return f"{path.stat().st_size / 1e6:.1f} MB" if path else "-"


def _checksum(card) -> str | None:
    """The local file's checksum state against the card (ok, mismatch, unchecked), or None without a file."""
    local = find_local(card)
    return checksum_state(card, local) if local else None


_LOCAL_CELL = {None: "[red]no[/]", OK: "[green]yes[/]", MISMATCH: "[bold red]sha256 mismatch[/]"}


@models_app.command("list")
@handle_errors
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every model in the zoo, with whether its file is available locally (and matches its card's sha256)."""
    cards = list(zoo().values())
    if as_json:
        rows = [{**_card_dict(c), "local_path": str(find_local(c) or "") or None, "checksum": _checksum(c)}
                for c in cards]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="spotdet model zoo (mAP = published COCO val2017 mAP@0.5:0.95)")
    for col in ("name", "family", "tier", "input", "params", "file size", "mAP", "precision", "license", "local"):
        table.add_column(col)
    for c in cards:
        table.add_row(c.name, c.family, c.tier, f"{c.input_size[1]}x{c.input_size[0]}", _fmt(c.params_m, "M"),
                      _size_mb(c), _fmt(c.published_map), c.precision, c.license,
                      _LOCAL_CELL.get(_checksum(c), "[green]yes[/]"))
    out.print(table)


def _card_dict(card) -> dict:
    data = dataclasses.asdict(card)
    data["names"] = f"{len(card.names)} classes"
    return data


@models_app.command("info")
@handle_errors
def info(name: str = typer.Argument(..., help="Model name from `spotdet models list`.")) -> None:
    """Show a model's card: file, preprocessing, decoder, published figures, checksum, where the file is."""
    card = get_card(name)
    data = _card_dict(card)
    local = find_local(card)
    data["local_path"] = str(local) if local else None
    data["file_size"] = _size_mb(card)
    data["checksum"] = _checksum_text(card, local)
    table = Table(show_header=False, title=f"model card: {card.name}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value))
    out.print(table)


def _checksum_text(card, local) -> str:
    if local is None:
        return "-"
    state = checksum_state(card, local)
    if state == MISMATCH:
        return f"MISMATCH: the file's sha256 is {file_sha256(local)}, not the card's; it will not load"
    return "ok (matches the card's sha256)" if state == OK else "unchecked (the card has no sha256)"
