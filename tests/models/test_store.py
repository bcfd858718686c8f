"""Model file resolution and verified download, against a real HTTP server on loopback serving real files."""

import dataclasses
import functools
import http.server
import os
import threading

import pytest

from support.paths import MODEL_DIR
from spotdet.errors import ChecksumError, ModelUnavailableError
from spotdet.models import store
from spotdet.models.card import get_card


@pytest.fixture()
def file_server(tmp_path):
    """Serve tmp_path/www over HTTP on a free loopback port; yields (base_url, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture()
def no_local_models(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SPOTDET_MODEL_DIR", str(empty))
    return empty


def test_model_dir_takes_several_paths_in_order(monkeypatch, tmp_path):
    card = get_card("fastestdet")
    monkeypatch.setenv("SPOTDET_MODEL_DIR", os.pathsep.join([str(tmp_path / "missing"), str(MODEL_DIR)]))
    assert store.fetch(card, allow_download=False) == MODEL_DIR / card.file


def test_download_verifies_and_caches(file_server, no_local_models):
    base, root = file_server
    card = get_card("fastestdet")
    (root / card.file).write_bytes((MODEL_DIR / card.file).read_bytes())
    card = dataclasses.replace(card, url=f"{base}/{card.file}")
    path = store.fetch(card, progress=False)
    assert path.parent == store.cache_dir()
    assert store.sha256_of(path) == card.sha256
    # Second resolution uses the cache: no server needed.
    card_offline = dataclasses.replace(card, url="http://127.0.0.1:9/never")
    assert store.fetch(card_offline) == path


def test_checksum_mismatch_leaves_nothing_in_cache(file_server, no_local_models):
    base, root = file_server
    card = get_card("fastestdet")
    (root / card.file).write_bytes(b"not the model" * 1000)
    card = dataclasses.replace(card, url=f"{base}/{card.file}")
    with pytest.raises(ChecksumError) as info:
        store.fetch(card, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and card.file in message and "put" in message
    cache = store.cache_dir()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_failed_download_says_where_to_put_the_file(file_server, no_local_models):
    base, _ = file_server
    card = dataclasses.replace(get_card("yolox-nano"), url=f"{base}/missing.onnx")
    with pytest.raises(ModelUnavailableError) as info:
        store.fetch(card, progress=False)
    assert str(no_local_models) in str(info.value) and card.file in str(info.value)
    cache = store.cache_dir()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_model_without_url_is_unavailable_with_a_hint(no_local_models):
    card = get_card("yolov8n-int8")
    assert card.url is None
    with pytest.raises(ModelUnavailableError, match="no download address"):
        store.fetch(card)
