"""Video and image loading (mmalign/data/video.py) and the frame ops (mmalign/data/video_ops.py).

Test videos are written with PyAV; frame i carries a bright vertical bar at x = 4i, so the
decoded frames say which source frame they are.
"""

import os
import pickle
import time
import warnings

import av
import numpy as np
import pytest
from PIL import Image

from mmalign.data.video import MediaError, fit_within, load_image, load_video, sample_indices
from mmalign.data.video_ops import VIDEO_OPS, apply_ops, register_op

BAR = 4  # bar width and spacing, pixels
WIDTH, HEIGHT = 128, 32  # room for 32 bars


def write_bar_video(path, n_frames, fps=10):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "10"}
        for i in range(n_frames):
            frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            frame[:, BAR * i : BAR * (i + 1)] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def bar_index(frame: np.ndarray) -> int:
    """Which source frame this is: where the bar is, in units of BAR at the frame's own width."""
    columns = frame.astype(float).mean(axis=(0, 2))
    centre = np.average(np.arange(len(columns)), weights=columns ** 4)
    return int(round((centre * WIDTH / frame.shape[1] - BAR / 2) / BAR))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    video = write_bar_video(folder / "bars.mp4", 32, fps=10)
    data = open(video, "rb").read()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("this is not a video\n" * 20)
    write_bar_video(folder / "one.mp4", 1)
    return folder


# ---------------------------------------------------------------- sample_indices


@pytest.mark.parametrize("n,src_fps,kw,expected", [
    (10, 30.0, dict(num_frames=4), [0, 3, 6, 9]),
    # linspace(0, 99, 8) = 0, 14.1, 28.3, 42.4, 56.6, 70.7, 84.9, 99
    (100, 30.0, dict(num_frames=8), [0, 14, 28, 42, 57, 71, 85, 99]),
    (5, 30.0, dict(num_frames=8), [0, 1, 2, 3, 4]),  # shorter than asked: every frame, no repeats
    (7, 30.0, dict(num_frames=1), [0]),
    (40, 30.0, dict(num_frames=None), list(np.linspace(0, 39, 32).round().astype(int))),  # all, capped at 32
    (90, 30.0, dict(fps=1), [0, 30, 60]),
    # every 7.5 source frames, floored: the frame on screen at t = k / 4 s
    (90, 30.0, dict(fps=4), [0, 7, 15, 22, 30, 37, 45, 52, 60, 67, 75, 82]),
    (10, 10.0, dict(fps=20), list(range(10))),  # faster than the source: each frame once
    (91, 30.0, dict(fps=1), [0, 30, 60, 90]),
    # 20 ticks 0, 15, ..., 285 capped at 5: positions linspace(0, 19, 5).round() = 0, 5, 10, 14, 19
    (300, 30.0, dict(fps=2, max_frames=5), [0, 75, 150, 210, 285]),
    (100, 30.0, dict(num_frames=8, fps=1), [0, 30, 60, 90]),  # fps wins over num_frames
    (100, 30.0, dict(num_frames=64, max_frames=4), [0, 33, 66, 99]),
])
def test_sample_indices_hand_cases(n, src_fps, kw, expected):
    assert sample_indices(n, src_fps, **kw) == expected


@pytest.mark.parametrize("n,src_fps,kw", [
    (0, 30.0, dict(num_frames=4)),
    (10, 30.0, dict(num_frames=0)),
    (10, 30.0, dict(num_frames=4, max_frames=0)),
    (10, 0.0, dict(fps=2)),
    (10, 30.0, dict(fps=0)),
    (10, 30.0, dict(fps=float("nan"))),
])
def test_sample_indices_rejects_bad_arguments(n, src_fps, kw):
    with pytest.raises(ValueError):
        sample_indices(n, src_fps, **kw)


@pytest.mark.parametrize("h,w,budget", [(1080, 1920, 100_000), (7, 13, 50), (1, 1000, 10), (480, 640, 480 * 640)])
def test_fit_within_keeps_budget_and_aspect(h, w, budget):
    nh, nw = fit_within(h, w, budget)
    assert nh * nw <= budget and nh >= 1 and nw >= 1
    if h * w <= budget:
        assert (nh, nw) == (h, w)
    else:
        assert abs(nh / nw - h / w) < 0.2 * h / w + 1 / nw


# ---------------------------------------------------------------- load_video


def test_uniform_frames_come_in_order(media):
    video = load_video(media / "bars.mp4", num_frames=8)
    expected = [0, 4, 9, 13, 18, 22, 27, 31]  # linspace(0, 31, 8).round()
    assert video.frames.shape == (8, HEIGHT, WIDTH, 3) and video.frames.dtype == np.uint8
    assert [bar_index(f) for f in video.frames] == expected == video.indices
    assert video.timestamps == pytest.approx([i / 10 for i in expected])
    assert video.source_fps == pytest.approx(10.0)
    assert video.path == str(media / "bars.mp4")


def test_fps_sampling_picks_the_right_times(media):
    video = load_video(media / "bars.mp4", fps=2)
    assert video.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert [bar_index(f) for f in video.frames] == [0, 5, 10, 15, 20, 25, 30]


def test_max_frames_caps_fps_sampling(media):
    video = load_video(media / "bars.mp4", fps=10, max_frames=8)
    assert [bar_index(f) for f in video.frames] == [0, 4, 9, 13, 18, 22, 27, 31]


def test_max_pixels_downscales_keeping_order(media):
    video = load_video(media / "bars.mp4", num_frames=4, max_pixels=1024)
    t, h, w, _ = video.frames.shape
    assert h * w <= 1024 and (h, w) == fit_within(HEIGHT, WIDTH, 1024) == (16, 64)
    assert [bar_index(f) for f in video.frames] == [0, 10, 21, 31]


def test_video_path_accepts_pathlike_and_leaves_bridge_native(media):
    import decord

    load_video(media / "bars.mp4", num_frames=2)
    assert decord.bridge._CURRENT_BRIDGE.type == "native"


@pytest.mark.parametrize("name,reason", [
    ("missing.mp4", "file not found"),
    ("empty.mp4", "empty file"),
    ("truncated.mp4", "not a readable video"),
    ("text.mp4", "not a readable video"),
    ("one.mp4", "has 1 frame(s); need at least 2"),
    (".", "not a regular file"),
])
def test_bad_videos_raise_media_error_naming_path(media, name, reason):
    path = media / name
    with pytest.raises(MediaError) as info:
        load_video(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_frames_that_do_not_decode_are_a_media_error(media, monkeypatch):
    import decord

    def broken(self, indices):
        raise decord.DECORDError("av_read_frame failed")

    monkeypatch.setattr(decord.VideoReader, "get_batch", broken)
    with pytest.raises(MediaError, match="do not decode"):
        load_video(media / "bars.mp4")


def test_media_error_pickles_with_path_and_reason():
    e = pickle.loads(pickle.dumps(MediaError("/x/v.mp4", "empty file")))
    assert str(e) == "/x/v.mp4: empty file" and e.path == "/x/v.mp4" and isinstance(e, ValueError)


# ---------------------------------------------------------------- load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("make,fmt,expected", [
    (lambda: Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "TIFF", (255, 0, 0)),  # pure red in ink
    (lambda: _palette_image(), "PNG", (0, 0, 255)),
    (lambda: Image.new("LA", (8, 6), (100, 0)), "PNG", (255, 255, 255)),  # transparent -> white
    (lambda: Image.new("LA", (8, 6), (100, 255)), "PNG", (100, 100, 100)),
    (lambda: Image.fromarray(np.full((6, 8), 32896, np.uint16)), "PNG", (128, 128, 128)),  # I;16, 32896 / 257 = 128
    (lambda: Image.fromarray(np.full((6, 8), 65535, np.int32), "I"), "TIFF", (255, 255, 255)),
    (lambda: Image.new("RGBA", (8, 6), (255, 0, 0, 128)), "PNG", (255, 127, 127)),  # half red over white
    (lambda: Image.new("1", (8, 6), 1), "PNG", (255, 255, 255)),
])
def test_images_come_back_rgb_with_the_right_colour(tmp_path, make, fmt, expected):
    src = make()
    path = _save(src, tmp_path / f"img.{fmt.lower()}", format=fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == src.size
    assert np.abs(np.array(img.getpixel((3, 2)), int) - expected).max() <= 1


def _palette_image():
    img = Image.new("P", (8, 6), 0)
    img.putpalette([255, 255, 255, 0, 0, 255] + [0] * 762)
    img.putpixel((3, 2), 1)
    return img


def test_palette_transparency_composites_on_white(tmp_path):
    img = _palette_image()
    img.info["transparency"] = 1
    path = _save(img, tmp_path / "pt.png", transparency=1)
    assert load_image(path).getpixel((3, 2)) == (255, 255, 255)


def test_max_pixels_downscales_images(tmp_path):
    path = _save(Image.new("RGB", (400, 300), (10, 200, 30)), tmp_path / "big.jpg", quality=95)
    img = load_image(path, max_pixels=1200)
    assert img.width * img.height <= 1200 and (img.height, img.width) == fit_within(300, 400, 1200)
    assert np.abs(np.array(img.getpixel((5, 5)), int) - (10, 200, 30)).max() <= 6


def test_decompression_bomb_guard_follows_pil(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warned = _save(Image.new("RGB", (40, 40), (1, 2, 3)), tmp_path / "warned.png")  # 1600 px: PIL only warns
    bomb = _save(Image.new("RGB", (50, 50), (1, 2, 3)), tmp_path / "bomb.png")  # 2500 px > 2 x 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = load_image(warned, max_pixels=400)
    assert img.width * img.height <= 400
    with pytest.raises(MediaError, match="too many pixels") as info:
        load_image(bomb)
    assert str(bomb) in str(info.value)


def test_bad_images_raise_media_error_naming_path(tmp_path):
    good = _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)),
                 tmp_path / "good.png")
    data = good.read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    for name, reason in [("half.png", "not a readable image"), ("empty.png", "empty file"),
                         ("text.jpg", "not a readable image"), ("missing.png", "file not found")]:
        with pytest.raises(MediaError) as info:
            load_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and reason in str(info.value), name


# ---------------------------------------------------------------- video ops


def coded_clip(n=12, h=8, w=16):
    """Frame i is filled with i + 1 (never 0, so a black mask shows)."""
    return np.broadcast_to(np.arange(1, n + 1, dtype=np.uint8)[:, None, None, None], (n, h, w, 3)).copy()


def ids(frames):
    return [int(f[0, 0, 0]) - 1 for f in frames]


def test_reverse_reverses_frames_and_blocks():
    clip = coded_clip()
    assert ids(apply_ops(clip, [{"op": "reverse"}], seed=0)) == list(range(11, -1, -1))
    assert ids(apply_ops(clip, [{"op": "reverse", "block": 4}], seed=0)) == [8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]
    assert ids(apply_ops(clip, [{"op": "reverse", "block": 12}], seed=0)) == list(range(12))


@pytest.mark.parametrize("window", [2, 3, 5])
def test_local_shuffle_is_a_permutation_within_windows(window):
    clip = coded_clip(20)
    orders = [ids(apply_ops(clip, [{"op": "shuffle", "window": window}], seed=s)) for s in range(8)]
    for order in orders:
        assert sorted(order) == list(range(20)) and order != list(range(20))
        assert max(abs(pos - i) for pos, i in enumerate(order)) < window
        assert all(pos // window == i // window for pos, i in enumerate(order))
    assert len({tuple(o) for o in orders}) > 1  # the seed matters


def test_block_shuffle_moves_whole_blocks():
    order = ids(apply_ops(coded_clip(12), [{"op": "shuffle", "block": 3}], seed=5))
    blocks = [order[i : i + 3] for i in range(0, 12, 3)]
    assert order != list(range(12))
    assert sorted(b[0] for b in blocks) == [0, 3, 6, 9] and all(b == list(range(b[0], b[0] + 3)) for b in blocks)


def test_drop_keeps_every_kth_or_a_fraction():
    clip = coded_clip(12)
    assert ids(apply_ops(clip, [{"op": "drop", "every": 3}], seed=0)) == [0, 3, 6, 9]
    assert ids(apply_ops(clip, [{"op": "drop", "keep": 0.5}], seed=0)) == [0, 2, 4, 7, 9, 11]
    assert ids(apply_ops(clip, [{"op": "drop", "keep": 0.01}], seed=0)) == [0]


def test_freeze_repeats_the_start_frame():
    assert ids(apply_ops(coded_clip(8), [{"op": "freeze", "start": 5}], seed=0)) == [0, 1, 2, 3, 4, 5, 5, 5]


@pytest.mark.parametrize("h,w,area", [(8, 16, 0.25), (48, 64, 0.3), (30, 40, 0.5), (9, 7, 0.9), (30, 40, 1.0)])
def test_mask_covers_the_requested_area_on_every_frame(h, w, area):
    clip = coded_clip(5, h, w)
    out = apply_ops(clip, [{"op": "mask", "area": area}], seed=3)
    black = (out == 0).all(axis=-1)
    assert (black == black[0]).all()  # the same box on every frame
    rows, cols = np.where(black[0])[0], np.where(black[0])[1]
    n_rows, n_cols = len(set(rows)), len(set(cols))
    assert black[0].sum() == n_rows * n_cols  # one rectangle
    assert abs(n_rows - h * area ** 0.5) <= 1 and abs(n_cols - w * area ** 0.5) <= 1
    assert (out[~black] == clip[~black]).all()


def test_mask_position_depends_on_seed_only():
    clip = coded_clip(3, 40, 40)
    boxes = [np.argwhere(apply_ops(clip, [{"op": "mask", "area": 0.1}], seed=s)[0, :, :, 0] == 0).min(0).tolist()
             for s in (1, 1, 2, 3, 4)]
    assert boxes[0] == boxes[1] and len({tuple(b) for b in boxes}) > 1


@pytest.mark.parametrize("op", [
    {"op": "reverse", "block": 99}, {"op": "shuffle", "window": 1}, {"op": "shuffle", "block": 12},
    {"op": "drop", "every": 1}, {"op": "drop", "keep": 1.0}, {"op": "freeze", "start": 11},
    {"op": "freeze", "start": 50}, {"op": "mask", "area": 0.0}, {"op": "mask", "area": 0.001},
])
def test_identity_parameters_give_the_clip_back(op):
    clip = coded_clip(12)
    out = apply_ops(clip, [op], seed=7)
    assert out.shape == clip.shape and (out == clip).all()


def test_ops_are_deterministic_and_never_write_their_input():
    clip = coded_clip(12)
    before = clip.copy()
    ops = [{"op": "mask", "area": 0.3}, {"op": "shuffle", "window": 4}, {"op": "drop", "every": 2}]
    a, b = apply_ops(clip, ops, seed=11), apply_ops(clip, ops, seed=11)
    assert (a == b).all() and (clip == before).all()
    assert all(not np.shares_memory(VIDEO_OPS[name](clip, np.random.default_rng(0), **params), clip)
               for name, params in [("reverse", {}), ("drop", {"every": 1}), ("mask", {"area": 0.0}),
                                    ("freeze", {"start": 99}), ("shuffle", {"window": 1})])


@pytest.mark.parametrize("ops,message", [
    ([{"op": "teleport"}], "unknown video op 'teleport'; known: "),
    ([{"op": "shuffle", "windw": 3}], "video op 'shuffle'"),
    ([{"op": "shuffle"}], "video op 'shuffle': give exactly one of window, block"),
    ([{"op": "shuffle", "window": 2, "block": 2}], "video op 'shuffle': give exactly one"),
    ([{"op": "shuffle", "window": 0}], "video op 'shuffle': window must be an integer >= 1"),
    ([{"op": "drop", "keep": 0}], "video op 'drop': keep must be a number in (0, 1]"),
    ([{"op": "mask", "area": 1.5}], "video op 'mask': area must be a number in [0, 1]"),
    ([{"op": "mask", "area": True}], "video op 'mask'"),
    ([{"op": "freeze"}], "video op 'freeze'"),
    ([{"op": "freeze", "start": -1}], "video op 'freeze': start must be an integer >= 0"),
    ([{"op": "reverse", "block": 2.5}], "video op 'reverse': block must be an integer"),
    ([{"reverse": True}], "string 'op'"),
    ({"op": "reverse"}, "ops must be a list"),
])
def test_bad_ops_are_value_errors_naming_the_op(ops, message):
    with pytest.raises(ValueError) as info:
        apply_ops(coded_clip(), ops, seed=0)
    assert message in str(info.value)


def test_registered_ops_join_the_registry(monkeypatch):
    monkeypatch.setattr("mmalign.data.video_ops.VIDEO_OPS", dict(VIDEO_OPS))
    from mmalign.data import video_ops

    @video_ops.register_op("invert")
    def invert(frames, rng):
        return 255 - frames

    assert ids(255 - video_ops.apply_ops(coded_clip(3), [{"op": "invert"}], seed=0)) == [0, 1, 2]
    with pytest.raises(ValueError, match="already registered"):
        video_ops.register_op("invert")(invert)


def test_ops_on_a_decoded_video(media):
    video = load_video(media / "bars.mp4", num_frames=8)
    reversed_frames = apply_ops(video.frames, [{"op": "reverse"}], seed=0)
    assert [bar_index(f) for f in reversed_frames] == [31, 27, 22, 18, 13, 9, 4, 0]


def _write_vfr(path, stamps_ms):
    """A variable-frame-rate mp4: frame i shows grey level 10 * i from stamps_ms[i]."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), (10 * i) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_variable_frame_rate_video_is_sampled_by_time(tmp_path):
    """Ten frames in the first 0.36 s, then ten over 4 s: by index, fps=1 would take frames
    0, 2, 5, 7, ... (clustered at the start); by time it takes the frame on screen each second."""
    import decord

    stamps = [40 * i for i in range(10)] + [760 + 400 * i for i in range(10)]
    path = tmp_path / "vfr.mp4"
    _write_vfr(path, stamps)
    starts = np.asarray(decord.VideoReader(str(path)).get_frame_timestamp(list(range(20))))[:, 0]
    clip = load_video(path, num_frames=None, fps=1.0, max_frames=32)
    for tick, index in zip(range(len(clip.indices)), clip.indices):
        assert starts[index] <= tick + 1e-6 and (index == 19 or starts[index + 1] > tick + 1e-6)
    assert len(clip.indices) == 5  # ticks 0..4 s
    even = load_video(path, num_frames=5, max_frames=32)
    assert even.indices[1] >= 10  # the second of five even instants is past the dense start


@pytest.fixture
def new_run(monkeypatch):
    """This process as the start of a run of its own: no note said yet."""
    import mmalign.data.video as video

    monkeypatch.setenv(video._RUN, f"test-{os.getpid()}-{time.time_ns()}")
    monkeypatch.setattr(video, "_SAID", set())
    yield
    video._forget_run(os.environ[video._RUN])


def test_fps_past_max_frames_is_said_once(tmp_path, capsys, new_run):
    path = tmp_path / "long.mp4"
    _write_vfr(path, [40 * i for i in range(50)])  # 2 s at 25 fps
    load_video(path, fps=25.0, max_frames=8)
    load_video(path, fps=25.0, max_frames=8)
    err = capsys.readouterr().err
    assert err.count("capped at max_frames=8") == 1 and "50 frames at fps=25" in err


def test_fps_past_max_frames_is_said_once_by_a_runs_decode_workers(tmp_path, capfd, new_run):
    """eval / pairs decode in worker processes (as training's DataLoader does): each of them used
    to say the run's note once, so the console had it once per worker."""
    import functools

    from mmalign.data.prefetch import decoded_ahead

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"long{i}.mp4"))
        _write_vfr(paths[-1], [40 * k for k in range(50)])
    load = functools.partial(load_video, fps=25.0, max_frames=8)
    got = [v for batch in decoded_ahead([paths[:2], paths[2:]], load, 2) for v in batch.values()]
    assert [len(v.indices) for v in got] == [8] * 4
    load_video(paths[0], fps=25.0, max_frames=8)  # and the parent, after its workers said it
    assert capfd.readouterr().err.count("capped at max_frames=8") == 1


def test_decoder_messages_go_into_the_reason_not_the_console(tmp_path, capfd):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(MediaError, match="not a readable video"):
        load_video(path)
    assert capfd.readouterr().err == ""
