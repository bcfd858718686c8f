"""The price table: instance types with example on-demand and spot USD/hour (shipped, dated, user-editable).

The shipped ``prices.toml`` holds example figures to edit, not live prices; ``--prices FILE`` replaces it.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spotdet.errors import UsageError


class PriceTableError(UsageError):
    """A price file that cannot be read, or an instance name it does not list."""


@dataclass(frozen=True)
class Instance:
    name: str
    provider: str
    gpu: str
    gpus: int
    gpu_memory_gb: float
    vcpus: int
    memory_gb: float
    on_demand: float
    spot: float | None = None

    @property
    def has_gpu(self) -> bool:
        return self.gpus > 0


@dataclass(frozen=True)
class PriceTable:
    instances: dict[str, Instance]
    date: str
    currency: str
    source: str
    note: str = ""

    def get(self, name: str) -> Instance:
        if name in self.instances:
            return self.instances[name]
        close = difflib.get_close_matches(name, list(self.instances), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PriceTableError(f"instance {name!r} is not in the price table {self.source}.{hint} "
                              f"Known: {', '.join(self.instances)}")

    def label(self) -> str:
        return f"{self.source}, dated {self.date} ({self.note or 'example figures'})"

    def bigger_than(self, inst: Instance) -> Instance | None:
        """The cheapest instance of the same provider that costs more and has at least as much GPU memory."""
        options = [i for i in self.instances.values() if i.provider == inst.provider and i.on_demand > inst.on_demand
                   and i.gpu_memory_gb >= inst.gpu_memory_gb and i.has_gpu == inst.has_gpu]
        return min(options, key=lambda i: i.on_demand, default=None)

    def smaller_than(self, inst: Instance) -> Instance | None:
        """The most expensive instance of the same provider, and of the same kind (GPU or not), that costs less."""
        options = [i for i in self.instances.values() if i.provider == inst.provider and i.on_demand < inst.on_demand
                   and i.has_gpu == inst.has_gpu]
        return max(options, key=lambda i: i.on_demand, default=None)


_FIELDS = {"provider": str, "gpu": str, "gpus": int, "gpu_memory_gb": float, "vcpus": int, "memory_gb": float,
           "on_demand": float}


def _instance(name: str, table: dict, source: str) -> Instance:
    if not isinstance(table, dict):
        raise PriceTableError(f"{source}: [instances.{name}] must be a table")
    missing = [k for k in ("on_demand",) if k not in table]
    if missing:
        raise PriceTableError(f"{source}: instance {name!r} has no {', '.join(missing)} price")
    values = {}
    try:
        for key, kind in _FIELDS.items():
            default = {"provider": "", "gpu": "none"}.get(key, 0)
            values[key] = kind(table.get(key, default))
        spot = table.get("spot")
        spot = None if spot is None else float(spot)
    except (TypeError, ValueError) as exc:
        raise PriceTableError(f"{source}: instance {name!r}: {exc}") from None
    if values["on_demand"] < 0 or (spot is not None and spot < 0):
        raise PriceTableError(f"{source}: instance {name!r} has a negative price")
    return Instance(name=name, spot=spot, **values)


def parse_price_table(text: str, source: str) -> PriceTable:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{source}: not valid TOML ({exc})") from None
    tables = data.get("instances")
    if not isinstance(tables, dict) or not tables:
        raise PriceTableError(f"{source}: no [instances.\"NAME\"] tables")
    meta = data.get("meta", {})
    return PriceTable(instances={n: _instance(n, t, source) for n, t in tables.items()},
                      date=str(meta.get("date", "undated")), currency=str(meta.get("currency", "USD")),
                      source=source, note=str(meta.get("note", "")))


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The price table at ``path``, or the example table shipped with spotdet."""
    if path is None:
        text = resources.files("spotdet.cost").joinpath("prices.toml").read_text(encoding="utf-8")
        return parse_price_table(text, "built-in example price table")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"{path}: cannot read price file ({exc})") from None
    return parse_price_table(text, str(path))


def resolve_price(price_per_hour: float | None, instance: str | None, prices: str | Path | None = None,
                  spot: bool = False) -> tuple[float | None, str]:
    """(USD/hour, where it came from) from an explicit price or an instance name in the price table."""
    if price_per_hour is not None and instance is not None:
        raise UsageError("give either --price-per-hour or --instance, not both")
    if price_per_hour is not None:
        if price_per_hour < 0:
            raise UsageError(f"--price-per-hour must be >= 0, got {price_per_hour}")
        return float(price_per_hour), f"${price_per_hour:g}/h (given)"
    if instance is None:
        return None, ""
    table = load_prices(prices)
    inst = table.get(instance)
    if spot:
        if inst.spot is None:
            raise PriceTableError(f"instance {instance!r} has no spot price in {table.source}")
        return inst.spot, f"{instance} spot ${inst.spot:g}/h ({table.label()})"
    return inst.on_demand, f"{instance} on-demand ${inst.on_demand:g}/h ({table.label()})"
