"""Decode and validate images: the one place where user input becomes a clean array.

Everything downstream (detection, classification, drawing) can then trust its input:
uint8, 2-D grayscale for the models, 3-channel RGB for display.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Larger images are refused before decoding (a 10000x10000 photo is 100 M pixels).
MAX_PIXELS = 120_000_000
COLOR_ORDERS = ("bgr", "rgb")
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check then fires at our limit


class InvalidImageError(ValueError):
    """The input is not an image we can use; the message says why."""


def read_image(source: str | os.PathLike | bytes | io.BufferedIOBase) -> np.ndarray:
    """Decode a file path, raw bytes or a binary file object to an RGB uint8 array (H, W, 3).

    EXIF orientation is applied, alpha is composited on white, 16-bit and float images are
    scaled to 8 bits. Raises `InvalidImageError` for anything that is not a complete image.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "upload"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(f"{path}: no such file")
        if path.is_dir():
            raise InvalidImageError(f"{path}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidImageError(f"{path}: cannot read ({exc.strerror})") from exc
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = source.read()
    if not data:
        raise InvalidImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise InvalidImageError(
                        f"{name}: {img.width}x{img.height} is over the {MAX_PIXELS // 1_000_000} M pixel limit"
                    )
                img.load()  # forces a full decode so truncated files fail here
                img = ImageOps.exif_transpose(img)
                return pil_to_rgb(img)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(f"{name}: image is over the {MAX_PIXELS // 1_000_000} M pixel limit") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name}: not a supported image ({exc.__class__.__name__})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"{name}: corrupt or truncated image ({exc})") from exc


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) to RGB uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return gray_to_rgb(to_uint8(np.asarray(img)))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data to uint8 (16-bit by 257, floats in 0..1 or 0..255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidImageError(f"unsupported pixel type {array.dtype}; use uint8, uint16 or float")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidImageError("image contains NaN or infinite values")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    if array.dtype == np.uint16 or array.max(initial=0) > 255:
        return (np.clip(array, 0, 65535) / 257.0).round().astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def as_gray(image: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Validate a numpy image (gray, gray+1, 3 or 4 channels) and return 2-D uint8 grayscale."""
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
    if min(image.shape[:2]) < 8:
        raise InvalidImageError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small")
    image = to_uint8(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    # ITU-R BT.601 luma (OpenCV's and PIL's weights); cvtColor is ~10x faster than numpy here.
    codes = {("bgr", 3): cv2.COLOR_BGR2GRAY, ("rgb", 3): cv2.COLOR_RGB2GRAY,
             ("bgr", 4): cv2.COLOR_BGRA2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY}
    return cv2.cvtColor(np.ascontiguousarray(image), codes[(color_order, image.shape[2])])
