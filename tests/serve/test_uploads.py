"""Uploads: EXIF orientation is applied, so boxes and sizes refer to the image as it is meant to be seen; the
pixel limit holds before decoding, for every format."""

import io

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from support.serve import yolox_server  # noqa: F401 (fixture)

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # "the stored pixels must be turned 90 degrees clockwise to be seen upright"


def jpeg(rgb: np.ndarray, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def cat_box(body):
    box = next(d["box"] for d in body["detections"] if d["class_name"] == "cat")
    return np.array([box["x1"], box["y1"], box["x2"], box["y2"]])


def test_exif_rotated_jpeg_is_detected_upright(yolox_server, photos):
    upright = cv2.cvtColor(photos["chelsea"], cv2.COLOR_BGR2RGB)  # 451 wide, 300 high
    stored = np.ascontiguousarray(np.rot90(upright))  # turned a quarter counter-clockwise: 300 wide, 451 high

    def post(data):
        return httpx.post(f"{yolox_server.url}/predict", files={"image": ("c.jpg", data, "image/jpeg")}).json()

    plain = post(jpeg(upright))
    rotated = post(jpeg(stored, ROTATE_90_CW))
    assert (rotated["width"], rotated["height"]) == (451, 300)  # the rotated (upright) size, not 300x451
    assert np.abs(cat_box(rotated) - cat_box(plain)).max() < 8  # the same cat, in upright coordinates

    ignored = post(jpeg(stored))  # the same pixels without the tag: seen as stored
    assert (ignored["width"], ignored["height"]) == (300, 451)


# -- the pixel limit holds for every format ------------------------------------------------------------------

def encode(ext: str, width: int = 64, height: int = 48) -> bytes:
    """An image in a format OpenCV decodes but whose size Pillow cannot read from the header."""
    rng = np.random.default_rng(0)
    if ext in (".hdr", ".pfm"):
        img = rng.random((height, width, 3), dtype=np.float32)
    else:
        img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok and cv2.imdecode(buf, cv2.IMREAD_COLOR) is not None  # OpenCV would decode it
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".pam", ".pfm", ".hdr"])
def test_a_format_whose_size_cannot_be_read_is_refused(yolox_server, ext):
    """--max-pixels is checked before decoding, so an image whose header Pillow cannot read is refused (400),
    however small, instead of being decoded by OpenCV to find out how large it is."""
    r = httpx.post(f"{yolox_server.url}/predict", files={"image": (f"x{ext}", encode(ext), "image/x-other")})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": f"x{ext}: not a decodable image, or a format whose size cannot be read before "
                                 "decoding (the service takes JPEG, PNG, BMP, WebP, TIFF or GIF)", "status": 400}


def test_nothing_over_the_pixel_limit_is_decoded_whatever_its_format(monkeypatch):
    from support.serve import served

    from spotdet.serve.config import ServeConfig

    def post(client, name, data):
        return client.post("/predict", files={"image": (name, data, "application/octet-stream")})

    big_pam = encode(".pam", 300, 200)  # 60,000 pixels, a header Pillow cannot read
    big_png = cv2.imencode(".png", np.zeros((200, 300, 3), np.uint8))[1].tobytes()
    small_png = cv2.imencode(".png", np.zeros((80, 100, 3), np.uint8))[1].tobytes()
    decoded = []
    real = cv2.imdecode
    config = ServeConfig(model="fastestdet", model_workers=1, max_pixels=10_000)
    with served(config) as (client, service):
        monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1) or real(*a, **k))
        pam, png = post(client, "big.pam", big_pam), post(client, "big.png", big_png)
        assert (pam.status_code, png.status_code) == (400, 413)
        assert png.json()["error"] == "big.png: 300x200 = 60000 pixels exceeds the limit of 10000 (--max-pixels)"
        assert decoded == []  # refused from the header, never decoded
        assert post(client, "ok.png", small_png).status_code == 200 and len(decoded) == 1
