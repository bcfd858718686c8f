"""Uploads: EXIF orientation is applied, so boxes and sizes refer to the image as it is meant to be seen."""

import io

import cv2
import httpx
import numpy as np
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
