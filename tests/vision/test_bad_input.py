"""Bad image input to the public API: unreadable images are refused with ImageLoadError, odd-but-valid images
are converted and still detected. (Bad model names live in tests/models/test_ref.py, bad devices in
tests/backends, bad options in tests/test_options.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

try:
    import resource
except ImportError:  # Windows
    resource = None

from spotdet import (
    Detector,
    ImageLoadError,
    ImageTooLargeError,
    ModelNotFoundError,
    ProviderUnavailableError,
    Result,
    SpotdetError,
    UnsupportedModelError,
    UsageError,
)
from spotdet.vision.image_io import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, load_image, max_file_bytes

from support.paths import ZOO_MODELS

MODEL = "yolox-nano"
CAT_SHAPE = (300, 451)  # skimage's chelsea, (height, width)


@pytest.fixture(scope="module")
def det(detectors) -> Detector:
    return detectors(MODEL)


@pytest.fixture(scope="module")
def cat(photos) -> np.ndarray:
    img = photos["chelsea"]
    assert img.shape[:2] == CAT_SHAPE
    return img


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok, f"cv2 could not encode {ext}"
    return buf.tobytes()


def _class_names(result: Result) -> list[str]:
    return [d["class_name"] for d in result.detections()]


def _detect_one(det: Detector, source) -> Result:
    results = det(source)
    assert isinstance(results, list) and len(results) == 1
    assert isinstance(results[0], Result)
    return results[0]


# --------------------------------------------------------------------------------------------------
# Unreadable files and bytes: ImageLoadError (a SpotdetError), never another exception type.
# --------------------------------------------------------------------------------------------------

def _assert_load_error(excinfo, *fragments: str) -> None:
    exc = excinfo.value
    assert type(exc) is ImageLoadError
    assert isinstance(exc, SpotdetError)
    message = str(exc)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_file(det, tmp_path):
    path = tmp_path / "does-not-exist.jpg"
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(path))
    _assert_load_error(excinfo, "does-not-exist.jpg", "no such file")


def test_missing_file_as_pathlib_path(det, tmp_path):
    path = tmp_path / "nothing-here.png"
    with pytest.raises(ImageLoadError) as excinfo:
        det(path)
    _assert_load_error(excinfo, "nothing-here.png", "no such file")


def test_directory(det, tmp_path):
    folder = tmp_path / "a-folder.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(folder))
    _assert_load_error(excinfo, "a-folder.jpg", "not a file")


def test_text_file_renamed_jpg(det, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a text file, not a picture\n" * 20)
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(path))
    _assert_load_error(excinfo, "notes.jpg", "not a decodable image")


def test_empty_file(det, tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert path.stat().st_size == 0
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(path))
    _assert_load_error(excinfo, "empty.jpg", "empty (0 bytes)")


def test_empty_bytes(det):
    with pytest.raises(ImageLoadError) as excinfo:
        det(b"")
    _assert_load_error(excinfo, "empty (0 bytes)")


@pytest.mark.parametrize("ext, fragments", [(".jpg", ("truncated JPEG",)),
                                             (".png", ("not a decodable image", "truncated"))], ids=["jpeg", "png"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["file", "bytes"])
def test_truncated_image(det, cat, tmp_path, as_bytes, ext, fragments):
    data = _encode(cat, ext)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # the full file is fine
    half = data[: len(data) // 2]
    source = half
    if not as_bytes:
        source = tmp_path / f"half{ext}"
        source.write_bytes(half)
    with pytest.raises(ImageLoadError) as excinfo:
        det(source)
    _assert_load_error(excinfo, *fragments, *([] if as_bytes else [f"half{ext}"]))


@pytest.mark.parametrize("as_bytes", [False, True], ids=["file", "bytes"])
def test_random_bytes(det, tmp_path, as_bytes):
    data = np.random.default_rng(1234).bytes(20_000)
    source = data
    if not as_bytes:
        source = tmp_path / "noise.jpg"
        source.write_bytes(data)
    with pytest.raises(ImageLoadError) as excinfo:
        det(source)
    _assert_load_error(excinfo, "not a decodable image", *([] if as_bytes else ["noise.jpg"]))


def test_file_name_too_long(det, tmp_path):
    """The OS refuses the name itself (ENAMETOOLONG): still an ImageLoadError, not a raw OSError."""
    path = tmp_path / ("a" * 300 + ".jpg")
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(path))
    _assert_load_error(excinfo, "aaaa")


def test_path_through_a_file(det, tmp_path):
    parent = tmp_path / "plain.txt"
    parent.write_text("x")
    with pytest.raises(ImageLoadError) as excinfo:
        det(str(parent / "cat.jpg"))
    _assert_load_error(excinfo, "plain.txt", "no such file")


def _error_within(seconds: float, read, fifo=None) -> BaseException | None:
    """What ``read()`` raised, run in a thread given ``seconds``: a read blocked on a FIFO fails the test instead
    of hanging the run (a writer then opens and closes the FIFO, which ends the blocked read)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            read()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still reading after {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_named_like_an_image_is_refused_without_blocking(det, tmp_path):
    """A FIFO without a writer blocks whoever opens it for reading; it is no image file, and says so."""
    fifo = tmp_path / "b.jpg"
    os.mkfifo(fifo)
    for read in (lambda: det(str(fifo)), lambda: load_image(fifo)):
        exc = _error_within(10, read, fifo)
        assert type(exc) is ImageLoadError and str(exc) == f"{fifo}: not a file (a FIFO)"


@pytest.mark.skipif(not os.path.exists("/dev/zero") or resource is None, reason="no /dev/zero or rlimits here")
def test_a_device_is_refused_not_read_forever():
    """/dev/zero never ends. It is read in a child process with 2 GiB of address space, so that a regression
    fails (MemoryError) instead of taking the machine's memory."""
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    code = ("from spotdet.vision.image_io import load_image\n"
            "try:\n    load_image('/dev/zero')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=cap_memory)
    assert proc.stdout.strip() == "ImageLoadError /dev/zero: not a file (a character device)", proc.stderr


def test_a_file_over_the_size_limit_is_refused_by_its_size_before_reading(det, tmp_path):
    """A sparse file claims any size without taking the disk space; it is refused from its size (the message
    gives the size os.stat read), not read whole."""
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as fh:
        fh.truncate(2 * MAX_FILE_BYTES)
    start = time.monotonic()
    with pytest.raises(ImageTooLargeError) as excinfo:
        det(str(sparse))
    assert str(excinfo.value) == (f"{sparse}: {2 * MAX_FILE_BYTES} bytes exceeds the limit of {MAX_FILE_BYTES} "
                                  "bytes for an image file")
    assert time.monotonic() - start < 2.0
    assert MAX_FILE_BYTES == max_file_bytes(None) < max_file_bytes(4 * DEFAULT_MAX_PIXELS)  # a raised limit reads more


def test_list_with_a_bad_source_raises_image_load_error(det, cat, tmp_path):
    """A list runs through the decode-ahead thread; the first unreadable source still raises ImageLoadError."""
    good = tmp_path / "good.jpg"
    assert cv2.imwrite(str(good), cat)
    bad = tmp_path / "bad.png"
    bad.write_bytes(_encode(cat, ".png")[:500])
    for sources in ([str(good), str(bad), cat], [cat, 17, str(good)], [str(good), str(good), str(tmp_path / "x.jpg")]):
        with pytest.raises(ImageLoadError):
            det(sources)


def test_stream_skips_and_reports_bad_sources(det, cat, tmp_path):
    good = tmp_path / "good.jpg"
    assert cv2.imwrite(str(good), cat)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    sources = [str(empty), str(good), {"not": "an image"}, cat, str(tmp_path / "missing.jpg")]
    reported = []
    results = list(det.stream(sources, on_error=lambda src, exc: reported.append((src, exc))))
    assert [r.path for r in results] == [str(good), None]  # the readable ones, in order
    assert all("cat" in _class_names(r) for r in results)
    assert [src for src, _ in reported] == [sources[0], sources[2], sources[4]]
    assert all(type(exc) is ImageLoadError for _, exc in reported)
    assert "empty" in str(reported[0][1]) and "unsupported image source" in str(reported[1][1])
    assert "no such file" in str(reported[2][1])


def test_good_image_after_bad_one_still_works(det, cat, tmp_path):
    """A refused image leaves the detector usable."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageLoadError):
        det(str(bad))
    good = tmp_path / "good.jpg"
    assert cv2.imwrite(str(good), cat)
    assert "cat" in _class_names(_detect_one(det, str(good)))


def test_zero_size_array(det):
    with pytest.raises(ImageLoadError) as excinfo:
        det(np.zeros((0, 10, 3), np.uint8))
    _assert_load_error(excinfo, "zero-size", "(0, 10, 3)")


@pytest.mark.parametrize("shape", [(10,), (1, 10, 10, 3), (10, 10, 2)], ids=["1d", "4d", "2-channel"])
def test_array_of_wrong_shape(det, shape):
    with pytest.raises(ImageLoadError) as excinfo:
        det(np.zeros(shape, np.uint8))
    _assert_load_error(excinfo, "expected HxW, HxWx3 or HxWx4", str(shape))


def test_array_of_unsupported_dtype(det):
    with pytest.raises(ImageLoadError) as excinfo:
        det(np.zeros((20, 20, 3), np.int32))
    _assert_load_error(excinfo, "unsupported dtype int32")


def test_zero_size_pil_image(det):
    with pytest.raises(ImageLoadError) as excinfo:
        det(Image.new("RGB", (0, 0)))
    _assert_load_error(excinfo, "zero-size")


@pytest.mark.parametrize("source", [42, {"path": "cat.jpg"}, None, 3.5], ids=["int", "dict", "None", "float"])
def test_unsupported_source_type(det, source):
    with pytest.raises(ImageLoadError) as excinfo:
        det(source)
    _assert_load_error(excinfo, "unsupported image source", f"type {type(source).__name__}")


# --------------------------------------------------------------------------------------------------
# Odd but valid images are converted to 8-bit BGR, not rejected: the cat is still found.
# --------------------------------------------------------------------------------------------------

def test_reference_bgr_array_detects_cat(det, cat):
    """The baseline the conversions below are compared with."""
    result = _detect_one(det, cat)
    assert result.orig_shape == CAT_SHAPE
    assert "cat" in _class_names(result)


def test_grayscale_png(det, cat, tmp_path):
    path = tmp_path / "gray.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY))
    with Image.open(path) as im:
        assert im.mode == "L"  # really a one-channel file
    result = _detect_one(det, str(path))
    assert result.orig_shape == CAT_SHAPE
    assert result.orig_img.shape == (*CAT_SHAPE, 3) and result.orig_img.dtype == np.uint8
    assert "cat" in _class_names(result)


def test_rgba_png(det, cat, tmp_path):
    bgra = cv2.cvtColor(cat, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 200  # a real, non-opaque alpha channel
    path = tmp_path / "rgba.png"
    assert cv2.imwrite(str(path), bgra)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
    result = _detect_one(det, str(path))
    assert result.orig_shape == CAT_SHAPE
    assert result.orig_img.shape == (*CAT_SHAPE, 3)
    # alpha is dropped, colours are kept
    assert np.abs(result.orig_img.astype(int) - cat.astype(int)).max() == 0
    assert "cat" in _class_names(result)


def test_16bit_png(det, cat, tmp_path):
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), cat.astype(np.uint16) * 257)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16  # really a 16-bit file
    result = _detect_one(det, str(path))
    assert result.orig_shape == CAT_SHAPE
    assert result.orig_img.dtype == np.uint8
    assert np.abs(result.orig_img.astype(int) - cat.astype(int)).max() <= 1
    assert "cat" in _class_names(result)


def test_2d_gray_array(det, cat):
    gray = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    assert gray.ndim == 2
    result = _detect_one(det, gray)
    assert result.orig_shape == CAT_SHAPE
    assert result.orig_img.shape == (*CAT_SHAPE, 3)
    assert "cat" in _class_names(result)


def test_bgra_array(det, cat):
    bgra = cv2.cvtColor(cat, cv2.COLOR_BGR2BGRA)
    result = _detect_one(det, bgra)
    assert result.orig_shape == CAT_SHAPE
    np.testing.assert_array_equal(result.orig_img, cat)
    assert "cat" in _class_names(result)


def test_pil_rgb_image(det, cat):
    pil = Image.fromarray(cv2.cvtColor(cat, cv2.COLOR_BGR2RGB))
    assert pil.mode == "RGB"
    result = _detect_one(det, pil)
    assert result.orig_shape == CAT_SHAPE
    np.testing.assert_array_equal(result.orig_img, cat)  # RGB -> BGR, not left in RGB order
    assert "cat" in _class_names(result)


def test_pil_grayscale_image(det, cat):
    pil = Image.fromarray(cv2.cvtColor(cat, cv2.COLOR_BGR2RGB)).convert("L")
    assert pil.mode == "L"
    result = _detect_one(det, pil)
    assert result.orig_shape == CAT_SHAPE
    assert "cat" in _class_names(result)


def test_pil_16bit_grayscale_image(det, cat):
    """A 16-bit PIL image (mode I;16) should be scaled to 8 bits like a 16-bit array or PNG, not clipped."""
    gray8 = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    pil = Image.fromarray(gray8.astype(np.uint16) * 257)
    assert pil.mode == "I;16"
    result = _detect_one(det, pil)
    assert result.orig_shape == CAT_SHAPE
    got_mean, want_mean = float(result.orig_img.mean()), float(gray8.mean())
    mean_abs_diff = float(np.abs(result.orig_img[:, :, 0].astype(int) - gray8.astype(int)).mean())
    assert mean_abs_diff < 2, f"decoded mean pixel {got_mean:.1f}, expected ~{want_mean:.1f}"
    assert "cat" in _class_names(result)


def test_raw_jpeg_bytes(det, cat):
    data = _encode(cat, ".jpg")
    for source in (data, bytearray(data), memoryview(data)):
        result = _detect_one(det, source)
        assert result.orig_shape == CAT_SHAPE
        assert result.path is None
        assert "cat" in _class_names(result)


# --------------------------------------------------------------------------------------------------
# Tiny images run through every zoo model.
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ZOO_MODELS)
@pytest.mark.parametrize("side", [1, 2])
def test_tiny_image(detectors, cat, model, side):
    tiny = cv2.resize(cat, (side, side), interpolation=cv2.INTER_AREA)
    result = _detect_one(detectors(model), tiny)
    assert result.orig_shape == (side, side)
    boxes = result.boxes.xyxy
    assert boxes.shape == (len(result), 4)
    assert np.all(np.isfinite(boxes))
    assert np.all(boxes >= 0)
    assert np.all(boxes[:, [0, 2]] <= side) and np.all(boxes[:, [1, 3]] <= side)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
