"""Media loading: video frames through decord, images through PIL. Every failure is a MediaError.

Which frames a video gives is decided by the pure `sample_indices` (uniform count, as Qwen-VL
and LLaVA sample, or a target rate), then decord decodes exactly those frames. A size budget
(`max_pixels`) downscales frames and images, keeping the aspect ratio, before any processor
sees them. Decord's bridge is never touched: frames come back as numpy arrays whatever bridge
another library chose.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


class MediaError(ValueError):
    """A media file that cannot be used. `str(e)` is "<path>: <reason>"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        # Both kept in args so that the error pickles (DataLoader workers send errors back).
        super().__init__(str(path), reason)
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Video:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    timestamps: list[float]  # seconds, the presentation time of each sampled frame
    source_fps: float  # the file's average frame rate
    path: str
    indices: list[int] = field(default_factory=list)  # which frames of the file were sampled


# ---------------------------------------------------------------- sampling (pure)


def sample_indices(n_frames_total: int, source_fps: float, num_frames: int | None = None,
                   fps: float | None = None, max_frames: int = 32) -> list[int]:
    """Frame indices to decode, ascending and distinct.

    - `fps` set (it wins over `num_frames`): the frame on screen every 1/fps seconds from t=0,
      i.e. floor(k * source_fps / fps) for every tick inside the video; a target rate above the
      source rate gives every frame once.
    - else `num_frames` spread uniformly over the whole video, as Qwen-VL and LLaVA do:
      np.linspace(0, n-1, k).round() (numpy rounds halves to even); a video shorter than k
      gives all its frames rather than repeats.
    - neither: every frame.
    At most `max_frames` are returned; a longer selection is subsampled uniformly the same way.
    """
    if n_frames_total < 1:
        raise ValueError(f"a video needs at least one frame, got n_frames_total={n_frames_total}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if fps is not None:
        return _uniform_subset(_indices_at_rate(n_frames_total, source_fps, fps), max_frames)
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    count = min(num_frames or n_frames_total, n_frames_total, max_frames)
    return _linspace_indices(n_frames_total, count)


def _linspace_indices(n: int, count: int) -> list[int]:
    return np.linspace(0, n - 1, count).round().astype(int).tolist()


def _indices_at_rate(n: int, source_fps: float, fps: float) -> list[int]:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if not (math.isfinite(source_fps) and source_fps > 0):
        raise ValueError(f"sampling by fps needs the source frame rate, got {source_fps}")
    step = source_fps / fps  # source frames per tick
    ticks = math.ceil(n / step - 1e-9)  # ticks k with k * step < n
    # The epsilon keeps 3 * (30 / 10) from flooring to 8.999... -> 8.
    indices = (math.floor(k * step + 1e-9) for k in range(ticks))
    return sorted(set(min(i, n - 1) for i in indices))


def _uniform_subset(indices: list[int], max_frames: int) -> list[int]:
    if len(indices) <= max_frames:
        return indices
    return [indices[p] for p in _linspace_indices(len(indices), max_frames)]


def fit_within(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """The largest (height, width) with the same aspect (rounded down) and h * w <= max_pixels."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, int(height * scale)), max(1, int(width * scale))
    while h * w > max_pixels:  # float rounding, or a 1-pixel-thin side held at 1
        if h >= w:
            h -= 1
        else:
            w -= 1
    return h, w


# ---------------------------------------------------------------- video


def load_video(path: str | os.PathLike, num_frames: int | None = 8, fps: float | None = None,
               max_frames: int = 32, max_pixels: int | None = None, min_frames: int = 2) -> Video:
    """Decode the frames `sample_indices` picks (see there), downscaled to `max_pixels`.

    Raises MediaError (naming the path) for a missing or empty file, a file decord cannot
    open (not a video, corrupt, truncated), fewer than `min_frames` frames, or frames that do
    not decode. Bad arguments (num_frames=0, ...) are ValueError.
    """
    path = os.fspath(path)
    _check_file(path)
    reader = _open_video(path)
    n = len(reader)
    if n < min_frames:
        raise MediaError(path, f"has {n} frame(s); need at least {min_frames}")
    source_fps = float(reader.get_avg_fps())
    if fps is not None and not (math.isfinite(source_fps) and source_fps > 0):
        raise MediaError(path, f"frame rate unknown ({source_fps}); cannot sample by fps")
    starts = _frame_starts(reader, n, path)
    by_time = _variable_rate(starts)

    def select(limit):
        if by_time:
            return sample_by_time(starts, num_frames=num_frames, fps=fps, max_frames=limit)
        return sample_indices(n, source_fps, num_frames=num_frames, fps=fps, max_frames=limit)

    indices = select(max_frames)
    if fps is not None:
        wanted = len(select(n))
        if wanted > max_frames:
            _say_once("max_frames", f"mmalign: note: {path} gives {wanted} frames at fps={fps:g}; capped at "
                                    f"max_frames={max_frames} (uniformly over the video). Said once per run.")
    frames, timestamps = _decode(reader, indices, path)
    if max_pixels is not None:
        frames = resize_frames(frames, max_pixels)
    return Video(frames, timestamps, source_fps, path, indices)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if not os.path.isfile(path):
        raise MediaError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "empty file (0 bytes)")


def _decord_errors() -> tuple[type[BaseException], ...]:
    import decord

    # DECORDError derives from Exception only; RuntimeError etc. come from its ctypes layer.
    return (decord.DECORDError, RuntimeError, OSError, ValueError, IndexError)


# A note is said once per run, though a run decodes in several processes (training's DataLoader
# workers, eval's and pairs' decoders): the process that creates the note's marker file says it.
# The run is named in the environment, which those workers inherit (fork or spawn); the process
# that named it removes the markers when it exits.
_RUN = "MMALIGN_NOTES_RUN"
_SAID: set[str] = set()


def _name_run() -> None:
    if _RUN not in os.environ:
        run = os.environ[_RUN] = f"{os.getpid()}-{time.time_ns()}"
        atexit.register(_forget_run, run)


def _marker(key: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"mmalign-note-{os.environ[_RUN]}-{key}")


def _forget_run(run: str) -> None:
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"mmalign-note-{glob.escape(run)}-*")):
        with contextlib.suppress(OSError):
            os.remove(path)


def _say_once(key: str, message: str) -> None:
    if key in _SAID:
        return
    _SAID.add(key)
    try:
        os.close(os.open(_marker(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # another process of this run said it
    except OSError:
        pass  # no writable temp folder: say it in each process rather than never
    print(message, file=sys.stderr)


_name_run()


@contextlib.contextmanager
def _native_stderr(sink: list[str]):
    """Capture what native code (decord's FFmpeg and C++ logging) writes to file descriptor 2,
    so it lands in the skip reason instead of on the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.extend(line.strip() for line in tmp.read().decode("utf-8", "replace").splitlines() if line.strip())


def _open_video(path: str):
    import decord  # imported here: a heavy native module that image-only users never need

    native: list[str] = []
    try:
        with _native_stderr(native):
            return decord.VideoReader(path)
    except _decord_errors() as e:
        detail = _first_line(e) + (f"; decoder said: {native[0][:160]}" if native else "")
        raise MediaError(path, f"not a readable video ({detail})") from None


def _frame_starts(reader, n: int, path: str) -> np.ndarray:
    try:
        return np.asarray(reader.get_frame_timestamp(list(range(n))))[:, 0].astype(float)
    except _decord_errors() as e:
        raise MediaError(path, f"frame timestamps unreadable ({_first_line(e)})") from None


def _variable_rate(starts: np.ndarray) -> bool:
    """Frame durations that differ by more than 25% of their median: a variable-frame-rate file."""
    if len(starts) < 3:
        return False
    durations = np.diff(starts)
    median = float(np.median(durations))
    return median > 0 and float(np.max(np.abs(durations - median))) > 0.25 * median


def sample_by_time(starts, num_frames: int | None = None, fps: float | None = None, max_frames: int = 32) -> list[int]:
    """`sample_indices` by presentation time instead of frame index (variable-frame-rate video):
    fps: the frame on screen at each tick k / fps; num_frames: the frames on screen at
    num_frames instants spread uniformly from the first to the last frame's start."""
    starts = np.asarray(starts, dtype=float)
    if fps is not None:
        ticks = np.arange(starts[0], starts[-1] + 1e-9, 1.0 / fps)
    else:
        count = min(num_frames or len(starts), len(starts), max_frames)
        ticks = np.linspace(starts[0], starts[-1], count)
    on_screen = np.clip(np.searchsorted(starts, ticks + 1e-9, side="right") - 1, 0, len(starts) - 1)
    return _uniform_subset(sorted(set(int(i) for i in on_screen)), max_frames)


def _decode(reader, indices: list[int], path: str) -> tuple[np.ndarray, list[float]]:
    native: list[str] = []
    try:
        with _native_stderr(native):
            batch = reader.get_batch(indices)
            stamps = reader.get_frame_timestamp(indices)
    except _decord_errors() as e:
        detail = _first_line(e) + (f"; decoder said: {native[0][:160]}" if native else "")
        raise MediaError(path, f"frames {indices[0]}..{indices[-1]} do not decode ({detail})") from None
    # A bridge set elsewhere (torch, ...) changes what get_batch returns; numpy either way.
    frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) != len(indices):
        raise MediaError(path, f"decoded {frames.dtype} frames of shape {frames.shape}, "
                               f"expected [{len(indices)}, H, W, 3] uint8")
    return frames, [float(s) for s in np.asarray(stamps)[:, 0]]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def resize_frames(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """Downscale every frame of [T, H, W, C] so that H * W <= max_pixels (bicubic, as Qwen-VL)."""
    t, height, width = frames.shape[:3]
    h, w = fit_within(height, width, max_pixels)
    if (h, w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in frames])


class MediaLoader:
    """Videos and images as a `SamplingConfig` (mmalign.config) says: the one place train,
    pairs and eval turn a path into frames."""

    def __init__(self, sampling):
        self.sampling = sampling

    def video(self, path: str) -> Video:
        s = self.sampling
        return load_video(path, num_frames=s.num_frames, fps=s.fps, max_frames=s.max_frames, max_pixels=s.max_pixels)

    def images(self, paths: list[str]) -> list[Image.Image]:
        return [load_image(p, max_pixels=self.sampling.max_pixels) for p in paths]


# ---------------------------------------------------------------- images


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """An RGB image, fully loaded, downscaled (aspect kept) so that width * height <= max_pixels.

    Every PIL mode becomes RGB: transparency (RGBA, LA, PA, P or L/RGB with a transparent
    colour) is composited on white; 16-bit and 32-bit integer grey (I;16*, I) is scaled from
    0..65535 to 0..255 (PIL's own conversion clips it instead); CMYK, palette, 1-bit, YCbCr
    convert as PIL does. EXIF orientation is not applied, as in the HF / Qwen loaders.
    PIL warns past Image.MAX_IMAGE_PIXELS and raises past twice that: we downscale anyway,
    so the warning is silenced and only the error becomes a MediaError, as does a missing,
    empty, corrupt or truncated file.
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                # The target comes from the full size: a JPEG draft rounds its sides up.
                full = (img.height, img.width)
                h, w = full if max_pixels is None else fit_within(*full, max_pixels)
                if img.format == "JPEG":
                    # Decode at 1/2, 1/4 or 1/8 scale where that still covers the target, so
                    # that a huge photo never sits in memory at full size.
                    img.draft(None, (w, h))
                img.load()
                rgb = to_rgb(img)
    except Image.DecompressionBombError as e:
        raise MediaError(path, f"too many pixels to decode safely ({e})") from None
    except Exception as e:  # noqa: BLE001 - PIL's format plugins raise many types on corrupt input
        raise MediaError(path, f"not a readable image ({type(e).__name__}: {_first_line(e)})") from None
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    return rgb


_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (see load_image for the rules); ValueError if PIL cannot."""
    if img.mode in _WIDE_GREY_MODES:
        grey = np.clip(np.asarray(img, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "F":
        grey = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float64)), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
