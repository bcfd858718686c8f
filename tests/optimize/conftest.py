"""Shared by the optimize tests: the classes a built variant must still find on the known real photos."""

from __future__ import annotations

import pytest

#: photo (conftest ``photos``) -> a class every faithful variant of a COCO detector finds in it
EXPECTED = {"chelsea": "cat", "astronaut": "person", "coffee": "cup"}


@pytest.fixture
def classes_found(photos):
    """detector -> {photo: the class names it finds at conf 0.25}."""

    def found(det) -> dict[str, set[str]]:
        result = {}
        for name, img in photos.items():
            (r,) = det([img], conf=0.25)
            result[name] = {r.names[int(c)] for c in r.boxes.cls}
        return result

    return found


@pytest.fixture
def assert_keeps_classes(classes_found):
    """Fails unless the detector finds the expected class in each known photo."""

    def check(det) -> None:
        found = classes_found(det)
        for photo, cls in EXPECTED.items():
            assert cls in found[photo], (photo, found[photo])

    return check
