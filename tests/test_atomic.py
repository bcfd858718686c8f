"""Atomic writes: the destination holds the old content or the complete new one, never a part; no leftovers."""

from __future__ import annotations

import pytest

from spotdet.atomic import atomic_path, atomic_write_lines, atomic_write_text


def test_success_replaces_the_file_and_leaves_nothing_else(tmp_path):
    dest = tmp_path / "sub" / "out.txt"
    atomic_write_text(dest, "old")
    atomic_write_lines(dest, (f"{i}\n" for i in range(3)))
    assert dest.read_text() == "0\n1\n2\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_the_old_content_and_removes_the_temp_file(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")

    def lines():
        yield "new, partial\n"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_lines(dest, lines())
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_interrupt_inside_the_block_is_also_cleaned_up(tmp_path):
    dest = tmp_path / "model.onnx"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest, durable=True) as tmp:
            tmp.write_bytes(b"half")
            assert tmp.parent == dest.parent and tmp != dest  # same folder: the rename cannot cross devices
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
