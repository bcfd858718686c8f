import numpy as np
import pytest

from spotdet.models.card import PreprocessSpec
from spotdet.vision.preprocess import preprocess

LETTERBOX_CENTER = PreprocessSpec("letterbox", "center", 114, "rgb", (0, 0, 0), (255, 255, 255))
LETTERBOX_TOPLEFT = PreprocessSpec("letterbox", "topleft", 114, "bgr", (0, 0, 0), (1, 1, 1))
STRETCH_MEANSTD = PreprocessSpec("stretch", "center", 0, "bgr", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))


def test_letterbox_centre_rgb_scaled():
    img = np.zeros((480, 640, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    tensor, tf = preprocess(img, (640, 640), LETTERBOX_CENTER)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    assert (tf.pad_x, tf.pad_y) == (0, 80) and tf.scale_x == tf.scale_y == 1.0
    assert tensor[0, 2, 320, 320] == pytest.approx(1.0) and tensor[0, 0, 320, 320] == 0.0  # RGB order
    assert tensor[0, 1, 10, 10] == pytest.approx(114 / 255)  # padding


def test_letterbox_topleft_maps_boxes_back():
    img = np.zeros((300, 600, 3), np.uint8)
    tensor, tf = preprocess(img, (416, 416), LETTERBOX_TOPLEFT)
    assert (tf.pad_x, tf.pad_y) == (0, 0) and tf.scale_x == pytest.approx(416 / 600)
    assert tensor[0, 0, 400, 10] == 114  # bottom band is padding, values unscaled
    boxes = np.array([[0, 0, 208, 104]], np.float32)
    np.testing.assert_allclose(tf.to_original(boxes), [[0, 0, 300, 150]], atol=0.5)


def test_stretch_mean_std_per_channel():
    img = np.full((100, 50, 3), (103.53 + 57.375, 116.28, 123.675 - 58.395), np.float32).round().astype(np.uint8)
    tensor, tf = preprocess(img, (320, 320), STRETCH_MEANSTD)
    np.testing.assert_allclose(tensor[0, :, 5, 5], [1.0, 0.0, -1.0], atol=0.02)
    np.testing.assert_allclose(tf.to_original(np.array([[0, 0, 320, 320]], np.float32)), [[0, 0, 50, 100]])


def test_boxes_are_clipped_to_the_image():
    _, tf = preprocess(np.zeros((100, 100, 3), np.uint8), (320, 320), STRETCH_MEANSTD)
    np.testing.assert_allclose(tf.to_original(np.array([[-50, -5, 400, 330]], np.float32)), [[0, 0, 100, 100]])
