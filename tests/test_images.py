"""Decoding user files: EXIF orientation, alpha, 16-bit, formats, limits and broken files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ferlens.core.images import MAX_DECODED_PIXELS, MAX_PIXELS, InvalidImageError, as_gray, decode_image, read_image


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    decoded = read_image(_encode(wide, "JPEG", exif=exif))
    assert decoded.shape == (60, 20, 3)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    decoded = read_image(_encode(rgba, "PNG"))
    assert decoded.shape == (16, 16, 3) and decoded.min() == 255


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits():
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    decoded = read_image(_encode(Image.fromarray(ramp), "PNG"))
    assert decoded.dtype == np.uint8 and decoded.shape == (64, 64, 3)
    assert decoded[..., 0].max() == round(ramp.max() / 257)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_common_formats_decode(fmt):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    assert read_image(_encode(img, fmt)).shape == (32, 48, 3)


def test_oversized_images_are_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 100
    header_only = _encode(Image.new("1", (side, side)), "PNG")  # tiny file, huge canvas
    with pytest.raises(InvalidImageError, match="pixel limit"):
        read_image(header_only)


def test_truncated_and_garbage_files_are_clear_errors():
    data = _encode(Image.new("RGB", (64, 64), (10, 20, 30)), "PNG")
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        read_image(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="not a supported image"):
        read_image(b"GIF89a but not really")
    with pytest.raises(InvalidImageError, match="empty"):
        read_image(b"")


def test_as_gray_uses_the_colour_order():
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    assert as_gray(red, "rgb")[0, 0] == 76  # 0.299 * 255
    assert as_gray(red, "bgr")[0, 0] == 29  # read as blue: 0.114 * 255


def test_large_jpegs_are_decoded_at_reduced_size_and_say_so():
    photo = _encode(Image.new("L", (8000, 6000), 90), "JPEG")  # 48 M pixels, over MAX_DECODED_PIXELS
    decoded = decode_image(photo)
    assert decoded.rgb.shape == (3000, 4000, 3)  # libjpeg's 1/2 scale, the largest that fits
    assert decoded.rgb.shape[0] * decoded.rgb.shape[1] <= MAX_DECODED_PIXELS
    assert decoded.format == "JPEG" and decoded.original_size == (8000, 6000) and decoded.scale == 0.5
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    turned = decode_image(_encode(Image.new("L", (8000, 6000), 90), "JPEG", exif=exif))
    assert turned.rgb.shape == (4000, 3000, 3) and turned.original_size == (6000, 8000)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "P"])
def test_other_large_images_are_reduced_after_decoding(mode):
    decoded = decode_image(_encode(Image.new(mode, (6000, 4000)), "PNG"))  # 24 M pixels
    assert decoded.rgb.shape == (2000, 3000, 3) and decoded.scale == 0.5
    assert decoded.original_size == (6000, 4000)


def test_small_images_are_returned_whole():
    decoded = decode_image(_encode(Image.new("RGB", (640, 480), (1, 2, 3)), "WEBP", lossless=True))
    assert decoded.rgb.shape == (480, 640, 3) and decoded.scale == 1.0 and decoded.format == "WEBP"
    assert (decoded.rgb == (1, 2, 3)).all()


def test_float_arrays_convert_in_bands_with_one_scale():
    ramp = np.linspace(0.0, 1.0, 3000 * 800 * 3).reshape(3000, 800, 3)  # > one band of rows
    gray = as_gray(ramp, "rgb")
    assert gray.dtype == np.uint8 and gray[0, 0] == 0 and gray[-1, -1] == 255  # 0..1 scaled as a whole
    assert (np.diff(gray[:, 0].astype(int)) >= 0).all()
    ramp[1500, 400, 1] = np.nan
    with pytest.raises(InvalidImageError, match="NaN"):
        as_gray(ramp, "rgb")


def test_a_path_with_a_nul_byte_is_one_line_naming_it(tmp_path):
    """Issue 41: os.stat's bare ValueError ("embedded null byte") reached the caller of read_image."""
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.video import InvalidVideoError, probe_video

    Image.new("RGB", (64, 64)).save(tmp_path / "photo.jpg")
    name = str(tmp_path / "photo.jpg") + "\x00.png"
    for read, error in ((read_image, InvalidImageError), (EmotionRecognizer().predict, InvalidImageError),
                        (probe_video, InvalidVideoError)):
        with pytest.raises(error) as caught:
            read(name)
        message = str(caught.value)
        assert message == f"{name!r}: the file name holds a NUL byte (\\x00), which no file name can; check how the " \
                          "path was made", message


def _claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0) claiming another size; the data stays that of the real picture."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length, precision
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4:]


def test_a_jpeg_whose_data_runs_out_early_is_corrupt_not_grey(astronaut_rgb):
    """Issue 41: a header claiming 10000x11000 over 160x120 of data decoded as a flat grey 2500x2750 picture
    (libjpeg fills what is missing with mid-grey), which whole-image mode then gave an emotion."""
    from ferlens.core.recognition import EmotionRecognizer

    small = _encode(Image.fromarray(astronaut_rgb).resize((160, 120)), "JPEG", quality=90)
    for width, height in ((10000, 11000), (1000, 1100)):
        with pytest.raises(InvalidImageError, match=rf"corrupt or truncated image data: its data runs out after the "
                                                    rf"top \d+\.\d % of its {width}x{height} picture"):
            read_image(_claiming(small, width, height))
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        EmotionRecognizer().predict(_claiming(small, 10000, 11000), whole_image=True)
    assert read_image(small).shape == (120, 160, 3)
    # A real picture with a mid-grey lower half is no such fill: it decodes.
    half_grey = astronaut_rgb.copy()
    half_grey[256:] = 128
    assert read_image(_encode(Image.fromarray(half_grey), "JPEG", quality=95)).shape == (512, 512, 3)
