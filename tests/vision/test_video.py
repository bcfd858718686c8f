"""Video sources: every Nth frame from the start, given frames by seeking, frame items, unreadable videos."""

from __future__ import annotations

import os

import numpy as np
import pytest

from support.media import make_video
from spotdet.errors import ImageLoadError, ImageTooLargeError, UsageError
from spotdet.vision.video import (count_frames, frame_item, is_video_name, iter_frames, parse_frame_item,
                                  read_frames)


@pytest.fixture(scope="module")
def video(photos, tmp_path_factory):
    return str(make_video(tmp_path_factory.mktemp("video") / "cat.mp4", photos["chelsea"], frames=12))


def test_every_nth_frame_from_the_start(video):
    every = list(iter_frames(video))
    assert [n for n, _ in every] == list(range(12)) and count_frames(video) == 12
    assert every[0][1].shape == (300, 450, 3)  # chelsea, 451 wide, cropped to an even width
    # consecutive frames differ (the photo moves), so a frame number cannot silently point at a neighbour
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() > 3 for (_, a), (_, b) in zip(every, every[1:]))
    third = list(iter_frames(video, stride=3))
    assert [n for n, _ in third] == [0, 3, 6, 9]
    assert all(np.array_equal(frame, every[n][1]) for n, frame in third)
    with pytest.raises(UsageError, match="--vid-stride must be >= 1"):
        list(iter_frames(video, stride=0))


def test_read_frames_seeks_to_exactly_the_frames_asked_for(video):
    every = dict(iter_frames(video))
    got = list(read_frames(video, [5, 6, 9, 11, 12, 40]))
    assert [n for n, _ in got] == [5, 6, 9, 11, 12, 40]
    for n, frame in got[:4]:
        assert np.array_equal(frame, every[n]), f"frame {n} is not the frame a sequential read gives"
    assert all(isinstance(f, ImageLoadError) and "past the end" in str(f) for _, f in got[4:])
    assert list(read_frames(video, [])) == []
    with pytest.raises(ValueError, match="ascending"):
        list(read_frames(video, [3, 1]))


def test_frame_items_round_trip_and_only_videos_carry_them():
    item = frame_item("/data/clip.mp4", 12)
    assert item == "/data/clip.mp4#frame=12" and parse_frame_item(item) == ("/data/clip.mp4", 12)
    assert parse_frame_item("/data/a.jpg#frame=3") is None  # an image whose name ends that way stays a path
    assert parse_frame_item("/data/clip.mp4") is None
    assert is_video_name("x.MKV") and not is_video_name("x.jpg")


def test_unreadable_and_too_large_videos_say_why(tmp_path, video):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(ImageLoadError, match="fake.mp4: not a readable video"):
        list(iter_frames(str(fake)))
    with pytest.raises(ImageLoadError, match="no such file"):
        count_frames(str(tmp_path / "gone.mp4"))
    with pytest.raises(ImageTooLargeError, match="450x300 = 135000 pixels per frame exceeds the limit of 1000"):
        list(iter_frames(video, max_pixels=1000))
    if hasattr(os, "mkfifo"):  # OpenCV would wait for a writer: refused as what it is, before opening
        os.mkfifo(tmp_path / "pipe.mp4")
        with pytest.raises(ImageLoadError, match="pipe.mp4: not a file .a FIFO.$"):
            count_frames(str(tmp_path / "pipe.mp4"))
