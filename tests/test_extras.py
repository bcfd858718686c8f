"""``spotdet.extras``: the extra a missing import belongs to, named in one line; the table matches pyproject."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from spotdet.errors import MissingExtraError
from spotdet.extras import EXTRAS, install_hint, require

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_missing_module_names_the_extra_and_the_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail, as when not installed
    with pytest.raises(MissingExtraError) as info:
        require("serve", "spotdet serve")
    message = str(info.value)
    assert info.value.extra == "serve" and info.value.exit_code == 2
    assert message == "spotdet serve needs the 'serve' extra (uvicorn is not installed); pip install 'spotdet[serve]'"


def test_present_modules_pass():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    require("serve", "spotdet serve")


def test_unknown_extra_is_a_programming_error():
    with pytest.raises(KeyError, match="unknown extra"):
        require("nope", "x")


def test_every_extra_is_declared_in_pyproject():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(declared)
    everything = " ".join(declared["all"])
    # all = every extra but gpu (needs a driver) and distill (PyTorch: gigabytes)
    assert all(name in everything for name in set(EXTRAS) - {"gpu", "distill"})
    assert "distill" not in everything and "gpu" not in everything
    assert install_hint("plot") == "pip install 'spotdet[plot]'"
