"""Decode and validate images: the one place where user input becomes a clean array.

Everything downstream (detection, classification, drawing) can then trust its input:
uint8, 2-D grayscale for the models, 3-channel RGB for display.

Work is decided from the file's header before anything is decoded, so a tiny file that claims
a huge canvas costs nothing: only regular files up to `MAX_FILE_BYTES` are read, only
`IMAGE_FORMATS` are decoded (judged by content, not by the file name), sizes and aspect ratios
are checked, a JPEG is decoded directly at 1/2, 1/4 or 1/8 size, and any image larger than
`MAX_DECODED_PIXELS` is reduced as soon as it is decoded. Face boxes are always in the
coordinates of the image that `read_image` returns (see `DecodedImage`).
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferlens.files import NUL_IN_NAME, display_name

#: Pillow format names we decode, judged by content. Everything else is refused unopened.
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP")
#: File-name endings of those formats (for upload widgets and folder walks; decoding ignores them).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: File-name endings a training folder is walked for (`ferlens.training.data`). Wider than IMAGE_SUFFIXES on purpose:
#: training images are the trainer's own files, decoded by OpenCV (`cv2.imdecode`, which also reads PGM
#: and TIFF), while IMAGE_SUFFIXES lists only what `read_image` accepts from the app, the CLI and uploads.
TRAINING_IMAGE_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + (".pgm", ".tif", ".tiff")
#: Larger files are not read (the app's upload limit, `.streamlit/config.toml`, is the same).
MAX_FILE_BYTES = 25 * 1024 * 1024
#: Larger canvases (as the header says) are refused before decoding.
MAX_PIXELS = 120_000_000
#: Formats other than JPEG are decoded at full size; their decoding may use at most this much memory.
MAX_DECODE_BYTES = 256 * 1024 * 1024
#: `read_image` returns at most this many pixels (4896x3264); larger images are reduced. The
#: pipeline cannot use more: detection runs at <= 1280 px and faces are classified at 48 px.
MAX_DECODED_PIXELS = 16_000_000
#: Smaller images hold no usable face (the models see 48x48).
MIN_SIDE = 8
#: Longer and thinner images are refused: no face fits, and display would shrink them to nothing.
MAX_ASPECT_RATIO = 50
#: A JPEG whose bottom rows, over this share of its picture, are nothing but the mid-grey (128) that libjpeg puts
#: where data ran out is refused as corrupt (`_check_jpeg_data_lasted`); so is a JPEG of that grey alone.
MAX_GREY_FILL = 0.9
#: Arrays are converted to 8-bit grayscale this many elements at a time, so that a large float
#: array costs only its grayscale copy, not several full-size temporaries.
_CONVERT_CHUNK_ELEMENTS = 1 << 21
COLOR_ORDERS = ("bgr", "rgb")
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check then fires at our limit

_FORMAT_NAMES = "JPEG, PNG, WebP or BMP"
#: Magic numbers of formats people try, to say what a refused file is.
_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF8", "GIF"), (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (4, b"ftypavif", "AVIF"),
    (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"), (4, b"ftypmif1", "HEIF"), (0, b"%PDF", "PDF"),
    (0, b"%!PS", "PostScript"), (0, b"\xc5\xd0\xd3\xc6", "EPS"), (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (0, b"8BPS", "Photoshop"), (0, b"<svg", "SVG"), (0, b"<?xml", "SVG/XML"),
)


class InvalidImageError(ValueError):
    """The input is not an image we can use; the one-line message says why and what to do."""


@dataclass(frozen=True)
class DecodedImage:
    """An image as `read_image` returns it, and the size its file declares.

    `rgb` is at most `MAX_DECODED_PIXELS`; `scale` (<= 1) is its width over the original's, so a
    box found in `rgb` is at `box / scale` in the original (EXIF-rotated) image.
    """

    rgb: np.ndarray
    format: str
    original_size: tuple[int, int]  # width, height after EXIF rotation

    @property
    def scale(self) -> float:
        return self.rgb.shape[1] / self.original_size[0]


def read_image(source: str | os.PathLike | bytes | io.BufferedIOBase) -> np.ndarray:
    """Decode a file path, raw bytes or a binary file object to an RGB uint8 array (H, W, 3).

    EXIF orientation is applied, alpha is composited on white, 16-bit images are scaled to
    8 bits, and images over `MAX_DECODED_PIXELS` are reduced. Raises `InvalidImageError` for
    anything that is not a complete, usable image in one of `IMAGE_FORMATS`.
    """
    return decode_image(source).rgb


def decode_image(source: str | os.PathLike | bytes | io.BufferedIOBase) -> DecodedImage:
    """`read_image`, also telling the format and the original size."""
    data, prefix = _read_source(source)
    if not data:
        raise InvalidImageError(f"{prefix}the file is empty; choose an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
                width, height = img.size
                img = _decode_within_limits(img, data, prefix)
                _check_jpeg_data_lasted(img, width, height, prefix)
                if _apply_exif_orientation(img):
                    width, height = height, width
                return DecodedImage(pil_to_rgb(img), str(img.format or "").upper(), (width, height))
    except (InvalidImageError, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(f"{prefix}the image is over the {MAX_PIXELS // 1_000_000} M pixel limit; "
                                "save a smaller copy") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{prefix}{_not_supported(data)}") from exc
    except Exception as exc:  # decoders raise many types for broken data; each is a bad file
        raise InvalidImageError(f"{prefix}corrupt or truncated image data; re-save the file as JPEG or PNG "
                                "and try again") from exc


def check_dimensions(width: int, height: int, prefix: str = "") -> None:
    """Refuse sizes the pipeline cannot use, before any pixel is decoded or converted."""
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(f"{prefix}image of {width}x{height} pixels is too small; use one with at least "
                                f"{MIN_SIDE} pixels a side (48 or more works best)")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InvalidImageError(f"{prefix}image of {width}x{height} pixels is too long and thin (more than "
                                f"{MAX_ASPECT_RATIO}:1); crop it around the faces")
    if width * height > MAX_PIXELS:
        raise InvalidImageError(f"{prefix}{width}x{height} is over the {MAX_PIXELS // 1_000_000} M pixel limit; "
                                "save a smaller copy")


def _read_source(source) -> tuple[bytes, str]:
    """The encoded bytes (at most `MAX_FILE_BYTES`) and the prefix that names the source in messages."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        prefix = f"{_short_name(path)}: "
        return _read_regular_file(path, prefix), prefix
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read(MAX_FILE_BYTES + 1)
        except (OSError, ValueError) as exc:  # closed or unreadable stream
            raise InvalidImageError(f"cannot read the file ({_reason(exc)})") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidImageError("the file object gives text, not bytes; open it in binary mode ('rb')")
    else:
        raise InvalidImageError(f"expected a file path, bytes or a binary file, got {type(source).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"the file is over the {MAX_FILE_BYTES // 2**20} MB limit; save a smaller copy")
    return data, ""


def _read_regular_file(path: Path, prefix: str) -> bytes:
    """Read a regular file of at most `MAX_FILE_BYTES`; pipes, devices and folders are refused unread."""
    if "\x00" in str(path):  # os.stat would raise a bare ValueError ("embedded null byte")
        raise InvalidImageError(f"{prefix}{NUL_IN_NAME}")
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidImageError(f"{prefix}is a folder, not an image")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(f"{prefix}is not a regular file (a device, pipe or socket); give an image file")
        if info.st_size > MAX_FILE_BYTES:
            raise InvalidImageError(f"{prefix}the file is {info.st_size / 2**20:.0f} MB, over the "
                                    f"{MAX_FILE_BYTES // 2**20} MB limit; save a smaller copy")
        # O_NONBLOCK: should the path be swapped for a pipe after the check, opening it does not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise InvalidImageError(f"{prefix}is not a regular file; give an image file")
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise InvalidImageError(f"{prefix}no such file") from exc
    except PermissionError as exc:
        raise InvalidImageError(f"{prefix}permission denied; check that the file is readable") from exc
    except OSError as exc:
        raise InvalidImageError(f"{prefix}cannot read the file ({_reason(exc)})") from exc
    if len(data) > MAX_FILE_BYTES:  # the file grew, or its size was not known (e.g. under /proc)
        raise InvalidImageError(f"{prefix}the file is over the {MAX_FILE_BYTES // 2**20} MB limit; save a smaller copy")
    return data


def _decode_within_limits(img: Image.Image, data: bytes, prefix: str) -> Image.Image:
    """Load `img` (opened, not decoded) within the memory limits; at most `MAX_DECODED_PIXELS` come back."""
    width, height = img.size
    check_dimensions(width, height, prefix)
    pixels = width * height
    if img.format in ("JPEG", "MPO"):
        if _jpeg_needs_whole_coefficient_buffer(img, data):
            # Progressive and multi-scan JPEGs keep every DCT coefficient (2 bytes a sample) until the last scan.
            samples = _jpeg_samples_per_pixel(img)
            _check_decode_bytes(pixels * samples * 2, width, height, 2 * samples, "multi-scan JPEG", prefix)
        factor = next((f for f in (1, 2, 4, 8) if math.ceil(width / f) * math.ceil(height / f) <= MAX_DECODED_PIXELS), 8)
        if factor > 1:
            img.draft(None, (width // factor, height // factor))  # libjpeg decodes at 1/factor size directly
    else:
        per_pixel = _decode_bytes_per_pixel(img)
        _check_decode_bytes(pixels * per_pixel, width, height, per_pixel, img.format, prefix)
    img.load()  # a full decode, so that truncated files fail here
    pixels = img.width * img.height
    if pixels > MAX_DECODED_PIXELS:
        factor = math.ceil(math.sqrt(pixels / MAX_DECODED_PIXELS))
        try:
            if img.mode in ("1", "P"):
                raise ValueError("palette indices cannot be averaged")
            small = img.reduce(factor)
        except ValueError:  # modes reduce() does not take (1, P, I;16): every factor-th pixel
            small = img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.NEAREST)
        small.format = img.format  # info, with the EXIF orientation, is copied by reduce/resize
        img.close()  # frees the full-size pixels now, not when the caller's `with` ends
        img = small
    return img


def _check_jpeg_data_lasted(img: Image.Image, width: int, height: int, prefix: str) -> None:
    """Refuse a JPEG whose data ran out long before its picture did. libjpeg does not fail there: it decodes
    every missing block as mid-grey (all its coefficients zero), so a header claiming 10000x11000 over 160x120
    of data gave a flat grey picture, which whole-image mode then classified. Rows of nothing but 128 from the
    bottom up are that fill; over `MAX_GREY_FILL` of the picture, it holds (nearly) no image data."""
    if img.format not in ("JPEG", "MPO") or img.mode not in ("L", "RGB"):
        return
    rows = np.asarray(img).reshape(img.height, -1)
    if not (rows[-1] == 128).all():  # the usual case: one row looked at
        return
    grey = (rows == 128).all(axis=1)
    filled = len(grey) if grey.all() else int(np.argmin(grey[::-1]))
    if filled > MAX_GREY_FILL * len(grey):
        raise InvalidImageError(f"{prefix}corrupt or truncated image data: its data runs out after the top "
                                f"{100 * (1 - filled / len(grey)):.1f} % of its {width}x{height} picture, the rest "
                                "would be flat grey; re-save the file as JPEG or PNG and try again")


def _check_decode_bytes(needed: int, width: int, height: int, per_pixel: int, kind: str, prefix: str) -> None:
    if needed > MAX_DECODE_BYTES:
        limit = MAX_DECODE_BYTES / per_pixel / 1_000_000
        advice = "a smaller copy or a baseline (not progressive) JPEG" if "JPEG" in kind else "a smaller copy or a JPEG"
        raise InvalidImageError(f"{prefix}{width}x{height} is over the {limit:.0f} M pixel limit for this kind of {kind} "
                                f"image; save {advice}")


def _decode_bytes_per_pixel(img: Image.Image) -> int:
    """Peak bytes a pixel takes while a non-JPEG image is decoded and reduced."""
    if img.mode in ("1", "L", "P"):
        per_pixel = 1
    elif img.mode.startswith("I;16"):
        per_pixel = 2
    else:  # Pillow keeps RGB, RGBA, LA, I and F at 4 bytes a pixel
        per_pixel = 4
    if img.mode in ("RGBA", "LA", "PA"):
        per_pixel += 4  # reducing premultiplies alpha into a full-size copy
    if img.format == "WEBP":
        per_pixel += 12  # libwebp's own RGBA canvas and a bytes copy of it come before Pillow's image
    return per_pixel


def _jpeg_samples_per_pixel(img: Image.Image) -> float:
    """Colour samples per pixel from the components' sampling factors (3 for 4:4:4, 1.5 for 4:2:0)."""
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * max(1, getattr(img, "layers", 3))
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)


def _jpeg_needs_whole_coefficient_buffer(img: Image.Image, data: bytes) -> bool:
    """Progressive JPEGs, and baseline ones whose first scan carries fewer components than the frame."""
    if img.info.get("progressive") or img.info.get("progression"):
        return True
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return True  # not a clean marker sequence: assume the costly case
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: its component count follows the length
            return pos + 4 >= len(data) or data[pos + 4] < len(getattr(img, "layer", ()) or [0])
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True


def _apply_exif_orientation(img: Image.Image) -> bool:
    """Rotate a decoded image as its EXIF says; True if width and height swapped. A broken EXIF block
    only loses the rotation."""
    try:
        swaps = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # broken EXIF data: keep the image as stored
        return False
    return swaps


def _not_supported(data: bytes) -> str:
    for offset, magic, name in _OTHER_FORMATS:
        if data[offset:offset + len(magic)] == magic:
            return f"not a supported image (it looks like {name}); convert it to {_FORMAT_NAMES}"
    return f"not a supported image (not a {_FORMAT_NAMES} file); convert it to one of those formats"


def _short_name(path: Path) -> str:
    """The path for messages, quoted where it holds characters that do not print (`display_name`); very long
    names are shortened in the middle, so a message stays one line."""
    text = display_name(path)
    return text if len(text) <= 100 else f"{text[:60]}...{text[-37:]}"


def _reason(exc: OSError | ValueError) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or "unknown error").splitlines()[0].lower()


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) to RGB uint8; alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return gray_to_rgb(to_uint8(np.asarray(img)))
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(white)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data to uint8 (16-bit by 257, floats in 0..1 or 0..255).

    Works through the array a band of rows at a time, so converting a large float64 image
    needs only the uint8 result, not several full-size float temporaries.
    """
    convert = _uint8_converter(array)
    if array.dtype == np.uint8:
        return array
    if array.ndim == 0:
        return convert(array)
    out = np.empty(array.shape, np.uint8)
    for rows in _row_bands(array):
        out[rows] = convert(array[rows])
    return out


def _uint8_converter(array: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """How to bring `array`'s values to uint8, decided once from the whole array (type, range, NaN)."""
    if array.dtype == np.uint8:
        return lambda band: band
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidImageError(f"unsupported pixel type {array.dtype}; use uint8, uint16 or float")
    high = array.max(initial=0)
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(high) and np.isfinite(array.min(initial=0))):  # NaN and inf reach the min or max
            raise InvalidImageError("image contains NaN or infinite values; replace them before passing the image")
        scale = 255.0 if high <= 1.0 else 1.0
        return lambda band: np.clip(band * scale, 0, 255).round().astype(np.uint8)
    if array.dtype == np.uint16 or high > 255:
        return lambda band: (np.clip(band, 0, 65535) / 257.0).round().astype(np.uint8)
    return lambda band: np.clip(band, 0, 255).astype(np.uint8)


def _row_bands(array: np.ndarray) -> Iterator[slice]:
    rows = max(1, _CONVERT_CHUNK_ELEMENTS // max(1, array[0].size))
    for start in range(0, len(array), rows):
        yield slice(start, start + rows)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def as_gray(image: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Validate a numpy image (gray, gray+1, 3 or 4 channels) and return 2-D uint8 grayscale.

    Sizes are checked as for files (`check_dimensions`). Beyond the input, memory is the
    grayscale result plus one band of rows, whatever the pixel type.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy array or a path, got {type(image).__name__}")
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    if image.size == 0:
        raise InvalidImageError(f"empty image of shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidImageError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    check_dimensions(image.shape[1], image.shape[0])
    if image.ndim == 2:
        return np.ascontiguousarray(to_uint8(image))
    if image.dtype == np.uint8:
        return _color_to_gray(image, color_order)
    convert = _uint8_converter(image)
    gray = np.empty(image.shape[:2], np.uint8)
    for rows in _row_bands(image):
        gray[rows] = _color_to_gray(convert(image[rows]), color_order)
    return gray


def _color_to_gray(image: np.ndarray, color_order: str) -> np.ndarray:
    # ITU-R BT.601 luma (OpenCV's and PIL's weights); cvtColor is ~10x faster than numpy here.
    codes = {("bgr", 3): cv2.COLOR_BGR2GRAY, ("rgb", 3): cv2.COLOR_RGB2GRAY,
             ("bgr", 4): cv2.COLOR_BGRA2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY}
    return cv2.cvtColor(np.ascontiguousarray(image), codes[(color_order, image.shape[2])])


def as_rgb(image: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """A numpy image that `as_gray` accepts, as HxWx3 uint8 RGB (gray is repeated, alpha dropped),
    converted a band of rows at a time like `as_gray`; for detectors that look at colour."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (3, 4) or image.size == 0:
        return cv2.cvtColor(as_gray(image, color_order), cv2.COLOR_GRAY2RGB)  # as_gray refuses what is not an image
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    check_dimensions(image.shape[1], image.shape[0])
    convert = _uint8_converter(image)
    codes = {("bgr", 3): cv2.COLOR_BGR2RGB, ("rgb", 3): None, ("bgr", 4): cv2.COLOR_BGRA2RGB, ("rgb", 4): cv2.COLOR_RGBA2RGB}
    code = codes[(color_order, image.shape[2])]
    rgb = np.empty((*image.shape[:2], 3), np.uint8)
    for rows in _row_bands(image):
        band = np.ascontiguousarray(convert(image[rows]))
        rgb[rows] = band if code is None else cv2.cvtColor(band, code)
    return rgb
