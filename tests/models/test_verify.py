"""Local model files are checked against their card's sha256 when resolved; the hash is remembered per file stat.

Real model files, copied and then damaged the way a bad disk or an interrupted copy does: bytes flipped in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from spotdet import ChecksumError, Detector
from spotdet.models import verify
from spotdet.models.card import card_path_for, get_card, write_card_file
from spotdet.models.ref import resolve_model
from support.batch import cli_env, spotdet_exe
from support.paths import MODEL_DIR

MODEL = "fastestdet"
TIMEOUT = 120


def flip_bytes(path, count: int = 64) -> str:
    """Invert ``count`` bytes in the middle of the file, in place; returns the file's new sha256."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for k in range(middle, middle + count):
        data[k] ^= 0xFF
    with open(path, "r+b") as fh:  # in place, as a bad disk or a stray write would: same inode, same size
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """A model folder holding a good copy of the zoo model MODEL (and nothing else)."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MODEL_DIR / get_card(MODEL).file, folder)
    monkeypatch.setenv("SPOTDET_MODEL_DIR", str(folder))
    return folder


def test_damaged_model_file_is_refused_with_both_hashes(model_dir):
    card = get_card(MODEL)
    path = model_dir / card.file
    got = flip_bytes(path)
    with pytest.raises(ChecksumError) as info:
        resolve_model(MODEL)
    message = str(info.value)
    assert str(path) in message and card.sha256 in message and got in message
    assert "downloads" in message and card.url in message  # what to do about it
    with pytest.raises(ChecksumError):
        Detector(MODEL)  # every loader resolves through resolve_model


def test_verified_hash_is_remembered_until_the_file_changes(model_dir, monkeypatch):
    card = get_card(MODEL)
    path = model_dir / card.file
    assert resolve_model(MODEL).path == path
    entry = json.loads(verify.hashes_path().read_text())["files"][str(path)]
    assert entry["sha256"] == card.sha256 and entry["size"] == path.stat().st_size

    hashed = []
    real = verify.sha256_of
    monkeypatch.setattr(verify, "sha256_of", lambda p: hashed.append(p) or real(p))
    resolve_model(MODEL)
    Detector(MODEL)
    assert hashed == []  # unchanged file: a stat, no read

    flip_bytes(path)  # same size, same name: the changed mtime/ctime tells
    with pytest.raises(ChecksumError):
        resolve_model(MODEL)
    assert hashed == [path]


def test_unwritable_hash_cache_still_verifies(model_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert resolve_model(MODEL).path == model_dir / get_card(MODEL).file
    flip_bytes(model_dir / get_card(MODEL).file)
    with pytest.raises(ChecksumError):
        resolve_model(MODEL)


def test_locally_made_variant_is_checked_and_bring_your_own_cards_are_not(tmp_path, monkeypatch):
    folder = tmp_path / "made"
    folder.mkdir()
    parent = get_card("yolox-nano")
    checked = folder / "yolox_nano-fp16.onnx"
    unchecked = folder / "yolox_nano-mine.onnx"
    for path in (checked, unchecked):
        shutil.copy(MODEL_DIR / parent.file, path)
    common = dict(parent="yolox-nano", url=None, precision="fp16")
    write_card_file(dataclasses.replace(parent, name="yolox-nano-fp16", file=str(checked),
                                        sha256=hashlib.sha256(checked.read_bytes()).hexdigest(), **common),
                    card_path_for(checked))
    write_card_file(dataclasses.replace(parent, name="yolox-nano-mine", file=str(unchecked), sha256=None, **common),
                    card_path_for(unchecked))
    monkeypatch.setenv("SPOTDET_MODEL_DIR", os.pathsep.join([str(MODEL_DIR), str(folder)]))
    flip_bytes(checked)
    flip_bytes(unchecked)
    with pytest.raises(ChecksumError, match="spotdet optimize yolox-nano --precision fp16"):
        resolve_model("yolox-nano", precision="fp16")
    with pytest.raises(ChecksumError):
        resolve_model(checked)  # by path: its own card still applies
    assert resolve_model("yolox-nano-mine").path == unchecked  # no sha256 on the card: not checked


def test_cli_refuses_a_damaged_model_and_models_list_and_info_show_it(model_dir, tmp_path, photos):
    import cv2

    card = get_card(MODEL)
    got = flip_bytes(model_dir / card.file)
    env = {**cli_env(tmp_path / "cache"), "SPOTDET_MODEL_DIR": str(model_dir)}
    image = tmp_path / "cat.jpg"
    cv2.imwrite(str(image), photos["chelsea"])

    def run(*args):
        return subprocess.run([spotdet_exe(), *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)

    proc = run("detect", image, "--model", MODEL)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    assert got in lines[0] and card.sha256 in lines[0] and proc.stdout == ""

    rows = {r["name"]: r for r in json.loads(run("models", "list", "--json").stdout)}
    assert rows[MODEL]["checksum"] == "mismatch"
    assert rows["yolox-nano"]["local_path"] is None and rows["yolox-nano"]["checksum"] is None
    listing = run("models", "list")
    assert any(MODEL in line and "sha256 mismatch" in line for line in listing.stdout.splitlines()), listing.stdout

    info = run("models", "info", MODEL)
    assert info.returncode == 0, info.stderr
    assert "MISMATCH" in info.stdout and got[:12] in info.stdout

    env["SPOTDET_MODEL_DIR"] = str(MODEL_DIR)  # the good copy
    rows = {r["name"]: r for r in json.loads(run("models", "list", "--json").stdout)}
    assert {r["checksum"] for r in rows.values()} == {"ok"}
