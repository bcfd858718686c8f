"""The shipped example price table and user price files."""

from __future__ import annotations

import pytest

from spotdet.cost.prices import PriceTableError, load_prices, resolve_price
from spotdet.errors import UsageError


def test_shipped_table_is_dated_and_labelled_as_examples():
    table = load_prices()
    assert table.date[:4].isdigit()
    assert "example" in table.label() and "not live" in table.label()
    assert len(table.instances) >= 8
    for inst in table.instances.values():
        assert inst.on_demand > 0
        assert inst.spot is None or 0 < inst.spot < inst.on_demand
        assert inst.has_gpu == (inst.gpu != "none")


def test_bigger_and_smaller():
    table = load_prices()
    t4 = table.get("aws-g4dn.xlarge")
    bigger = table.bigger_than(t4)
    assert bigger.provider == "aws" and bigger.on_demand > t4.on_demand and bigger.gpu_memory_gb >= 16
    assert table.smaller_than(t4) is None  # the cheapest AWS GPU in the table
    assert table.smaller_than(bigger) == t4


def test_user_price_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[meta]\ndate = "2030-01-01"\n[instances.box]\ngpu = "none"\non_demand = 0.25\nspot = 0.1\n')
    table = load_prices(path)
    assert table.get("box").on_demand == 0.25 and table.date == "2030-01-01"
    assert resolve_price(None, "box", path)[0] == 0.25
    assert resolve_price(None, "box", path, spot=True)[0] == 0.1
    assert resolve_price(2.0, None)[0] == 2.0
    assert resolve_price(None, None) == (None, "")


@pytest.mark.parametrize("text", ["not toml [[[", "[meta]\ndate='x'\n", '[instances.a]\ngpu="T4"\n',
                                  '[instances.a]\non_demand="cheap"\n', '[instances.a]\non_demand=-1\n'])
def test_bad_price_files(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PriceTableError):
        load_prices(path)


def test_unknown_instance_suggests():
    with pytest.raises(PriceTableError, match="Did you mean aws-g4dn.xlarge"):
        load_prices().get("aws-g4dn.xlarg")
    with pytest.raises(UsageError):
        resolve_price(1.0, "aws-g4dn.xlarge")
    with pytest.raises(PriceTableError):
        load_prices("/nonexistent/prices.toml")
