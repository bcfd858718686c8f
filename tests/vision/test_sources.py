"""Sources: folders (recursive), globs, list files, single images, URLs and videos; all streamed lazily; and
their images through a real Detector with each result labelled by where it came from."""

from __future__ import annotations

import os
import socket
import threading
import time
import types
from pathlib import Path

import cv2
import pytest

from support.media import make_video, serve_files
from spotdet.errors import ImageLoadError, UsageError
from spotdet.vision.sources import (Input, fetch_url, iter_inputs, iter_sources, labelled_stream, list_images,
                                    source_kind)
from spotdet.vision.video import frame_item, iter_frames


@pytest.fixture
def tree(tmp_path) -> Path:
    for rel in ("b.jpg", "a.PNG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.json", "sub/f.mp4"):
        path = tmp_path / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path / "data"


def test_folder_is_recursive_sorted_and_only_images_and_videos(tree):
    got = list(iter_sources(str(tree)))
    assert got == [str(tree / n) for n in ("a.PNG", "b.jpg", "sub/c.jpeg", "sub/f.mp4", "sub/deeper/d.webp")]
    assert all(os.path.isabs(p) for p in got)
    assert str(tree / "sub/f.mp4") not in map(str, list_images(tree))  # calibration and bench read images only


def test_sources_are_generators():
    assert isinstance(iter_sources("."), types.GeneratorType)


def test_glob_recursive(tree):
    got = list(iter_sources(str(tree / "**" / "*.jp*g")))
    assert got == [str(tree / "b.jpg"), str(tree / "sub" / "c.jpeg")]
    assert list(iter_sources(str(tree / "*.nothing"))) == []


def test_list_file_relative_to_itself_with_comments_and_repeats(tree, tmp_path, monkeypatch):
    listing = tree / "list.txt"
    listing.write_text(f"# images\nb.jpg\n\n  sub/c.jpeg  \n{tree / 'b.jpg'}\nmissing.jpg\n"
                       "HTTPS://example.com/a.jpg\n")
    monkeypatch.chdir(tmp_path)  # relative entries do not depend on the working directory
    assert list(iter_sources(str(listing))) == [str(tree / "b.jpg"), str(tree / "sub/c.jpeg"),
                                                str(tree / "b.jpg"), str(tree / "missing.jpg"),
                                                "HTTPS://example.com/a.jpg"]  # a URL is kept as it is


def test_single_image_and_missing_source(tree):
    assert list(iter_sources(str(tree / "b.jpg"))) == [str(tree / "b.jpg")]
    with pytest.raises(UsageError, match="no such folder"):
        list(iter_sources(str(tree / "nope")))


def test_binary_file_is_not_a_list(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UsageError, match="not a text file"):
        list(iter_sources(str(blob)))


def test_kinds(tree):
    assert [source_kind(s) for s in ("https://x.org/a.jpg", "http://x", str(tree / "sub/f.mp4"), str(tree),
                                     str(tree / "b.jpg"), str(tree / "notes.txt"), str(tree / "*.jpg"))] == \
        ["url", "url", "video", "folder", "image", "list", "glob"]
    assert list(iter_sources("http://x.org/a.jpg?s=1")) == ["http://x.org/a.jpg?s=1"]  # not made a path
    with pytest.raises(UsageError, match="cannot read"):
        source_kind(str(tree / ("x" * 300)))  # a name the OS refuses is a usage error, not an OSError


# -- URLs -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jpeg(photos) -> bytes:
    return cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()


def test_fetch_url_reads_the_body_and_names_the_url_when_it_cannot(jpeg):
    routes = {"/cat.jpg": (200, {}, jpeg, 0.0), "/big.jpg": (200, {}, jpeg, 0.0),
              "/stream.jpg": (200, {"X-No-Length": "1"}, jpeg, 0.0), "/slow.jpg": (200, {}, jpeg, 2.0)}
    with serve_files(routes) as base:
        assert fetch_url(f"{base}/cat.jpg") == jpeg
        with pytest.raises(ImageLoadError, match=rf"^{base}/nope.jpg: HTTP 404 Not Found$"):
            fetch_url(f"{base}/nope.jpg")
        # over the limit: refused by its Content-Length before reading, or while reading when there is none
        with pytest.raises(ImageLoadError, match=f"{len(jpeg)} bytes exceeds the download limit of 1000 bytes"):
            fetch_url(f"{base}/big.jpg", max_bytes=1000)
        assert fetch_url(f"{base}/stream.jpg") == jpeg
        with pytest.raises(ImageLoadError, match="more than 1000 bytes, the download limit"):
            fetch_url(f"{base}/stream.jpg", max_bytes=1000)
        with pytest.raises(ImageLoadError, match="slow.jpg: cannot download .no answer within 0.3 s"):
            fetch_url(f"{base}/slow.jpg", timeout=0.3)
    with pytest.raises(ImageLoadError, match="http://127.0.0.1:9/a.jpg: cannot download"):
        fetch_url("http://127.0.0.1:9/a.jpg", timeout=2)  # nothing listens on the discard port
    with pytest.raises(ImageLoadError, match="cannot download"):
        fetch_url("http:///no-host.jpg")


def test_the_url_timeout_is_a_deadline_for_the_whole_download():
    """A server sending a byte every 0.2 s never trips a per-read timeout; the download still ends at its
    deadline (50 bytes would take 10 s)."""
    routes = {"/drip.jpg": (200, {"X-Dribble": "0.2"}, b"x" * 50, 0.0)}
    with serve_files(routes) as base:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match=rf"^{base}/drip.jpg: download took longer than 1 s$"):
            fetch_url(f"{base}/drip.jpg", timeout=1.0)
        assert time.monotonic() - start < 3.0


def test_the_url_deadline_covers_headers_sent_a_byte_at_a_time():
    """The same server, slow before its headers are done: urllib reads them inside urlopen, one wait at a time."""
    listener = socket.create_server(("127.0.0.1", 0))

    def dribble() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"x" * 50:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up
                    return
                time.sleep(0.2)

    threading.Thread(target=dribble, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.jpg"
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=rf"^{url}: cannot download \(no answer within 1 s\)$"):
        fetch_url(url, timeout=1.0)
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("url", ["http://[::1", "https://[::1/cat.jpg"])
def test_a_malformed_url_is_an_image_load_error(url):
    with pytest.raises(ImageLoadError, match=r"not a valid URL \(Invalid IPv6 URL\)$"):
        fetch_url(url)


# -- entries through a real Detector, each result labelled ---------------------------------------------------
def test_every_kind_of_input_through_a_detector_comes_back_labelled(tmp_path, photos, jpeg, detectors):
    det = detectors("yolox-nano")
    cat = tmp_path / "cat.jpg"
    cat.write_bytes(jpeg)
    video = str(make_video(tmp_path / "clip.mp4", photos["chelsea"], frames=7))
    fake_video = tmp_path / "fake.avi"
    fake_video.write_text("no video")
    routes = {"/cat.jpg": (200, {}, jpeg, 0.0), "/page.html": (200, {}, b"<html>not an image</html>", 0.0)}
    errors: list[tuple[Input, str]] = []
    with serve_files(routes) as base:
        entries = [str(cat), f"{base}/cat.jpg", f"{base}/gone.jpg", video, str(tmp_path / "missing.jpg"),
                   f"{base}/page.html", str(fake_video), frame_item(video, 4), frame_item(video, 5)]
        inputs = iter_inputs(entries, vid_stride=3)
        got = list(labelled_stream(det.stream, inputs, lambda inp, exc: errors.append((inp, str(exc)))))
    assert [(inp.path, inp.frame, inp.entry) for inp, _ in got] == [
        (str(cat), None, 0), (f"{base}/cat.jpg", None, 1), (video, 0, 3), (video, 3, 3), (video, 6, 3),
        (video, 4, 7), (video, 5, 8)]
    assert all((r.path, r.frame) == (inp.path, inp.frame) for inp, r in got)
    assert all("cat" in r.summary() for _, r in got)  # real detections on every kind of input
    assert got[1][1].to_dict()["detections"] == got[0][1].to_dict()["detections"]  # URL = same bytes as file
    frames = dict(iter_frames(video))
    direct = det(frames[4])[0]
    assert got[5][1].to_dict()["detections"] == direct.to_dict()["detections"]  # frame item = that frame
    assert "frame" not in got[0][1].to_dict() and got[2][1].to_dict()["frame"] == 0
    assert [inp.entry for inp, _ in errors] == [2, 4, 5, 6]  # in input order, like the results
    reasons = {inp.entry: reason for inp, reason in errors}
    assert reasons[2] == f"{base}/gone.jpg: HTTP 404 Not Found"
    assert reasons[4].endswith("missing.jpg: no such file")
    assert reasons[5].startswith(f"{base}/page.html: ") and "not a decodable image" in reasons[5]
    assert "fake.avi: not a readable video" in reasons[6]
