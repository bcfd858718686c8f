"""Job sources: folders (recursive), globs, list files, single images; all streamed lazily."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from spotdet.errors import UsageError
from spotdet.vision.sources import iter_sources


@pytest.fixture
def tree(tmp_path) -> Path:
    for rel in ("b.jpg", "a.PNG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.json"):
        path = tmp_path / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path / "data"


def test_folder_is_recursive_sorted_and_only_images(tree):
    got = list(iter_sources(str(tree)))
    assert got == [str(tree / n) for n in ("a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp")]
    assert all(os.path.isabs(p) for p in got)


def test_sources_are_generators():
    assert isinstance(iter_sources("."), types.GeneratorType)


def test_glob_recursive(tree):
    got = list(iter_sources(str(tree / "**" / "*.jp*g")))
    assert got == [str(tree / "b.jpg"), str(tree / "sub" / "c.jpeg")]
    assert list(iter_sources(str(tree / "*.nothing"))) == []


def test_list_file_relative_to_itself_with_comments_and_repeats(tree, tmp_path, monkeypatch):
    listing = tree / "list.txt"
    listing.write_text(f"# images\nb.jpg\n\n  sub/c.jpeg  \n{tree / 'b.jpg'}\nmissing.jpg\n")
    monkeypatch.chdir(tmp_path)  # relative entries do not depend on the working directory
    assert list(iter_sources(str(listing))) == [str(tree / "b.jpg"), str(tree / "sub/c.jpeg"),
                                                str(tree / "b.jpg"), str(tree / "missing.jpg")]


def test_single_image_and_missing_source(tree):
    assert list(iter_sources(str(tree / "b.jpg"))) == [str(tree / "b.jpg")]
    with pytest.raises(UsageError, match="no such folder"):
        list(iter_sources(str(tree / "nope")))


def test_binary_file_is_not_a_list(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UsageError, match="not a text file"):
        list(iter_sources(str(blob)))
