"""Decoding, cropping, resizing and PNG-encoding photographs.

The dataset builders turn source photos of any size and mode into square RGB
PNGs of one resolution. Resizing uses Pillow's Lanczos filter, whose kernel is
stretched by the scale factor when downsampling, so it low-pass filters before
subsampling (antialiased, no moiré) rather than picking pixels; a crop box may
have fractional corners, which the filter honours exactly. Everything here is
deterministic: the same input bytes give the same output bytes.
"""

import io
import os

import numpy as np
from PIL import Image
from PIL import ImageOps

#: Exceptions Pillow raises for a missing, truncated, corrupt or absurdly large
#: file (`UnidentifiedImageError` is an `OSError`). Builders skip such files.
UNREADABLE_IMAGE_ERRORS = (
    OSError, ValueError, SyntaxError, Image.DecompressionBombError)

Box = tuple[float, float, float, float]


def open_rgb(path: str | os.PathLike) -> Image.Image:
  """Decodes an image file to an RGB `PIL.Image`, upright.

  Applies the EXIF orientation tag, replicates grey levels to three channels and
  drops an alpha channel (source photos are opaque). High bit depths are
  scaled to 8 bits, not clipped: 16-bit integer modes (`I;16*`, and `I`
  with values in 0..65535) by `round(v / 257)`, float mode `F` with values
  in [0, 1] by `round(255 v)`.

  Args:
    path: An image file Pillow can decode (PNG, JPEG, WebP, BMP, TIFF, ...).

  Returns:
    The fully decoded RGB image.

  Raises:
    One of `UNREADABLE_IMAGE_ERRORS` if the file cannot be decoded in full
    (for example a truncated JPEG), or `ValueError` for integer values
    outside 0..65535 or float values outside [0, 1] (no scale is known).
  """
  with Image.open(path) as image:
    image.load()
    upright = ImageOps.exif_transpose(image)
    return to_8bit(upright).convert("RGB")


def to_8bit(image: Image.Image) -> Image.Image:
  """`image` with 16-bit integer or float grey levels scaled to mode 'L'
  (see `open_rgb`); other modes are returned as they are."""
  mode = image.mode
  if not (mode == "I" or mode.startswith("I;16") or mode == "F"):
    return image
  values = np.asarray(image).astype(np.float64)
  if mode == "F":
    if not (np.all(np.isfinite(values)) and values.min() >= 0 and
            values.max() <= 1):
      raise ValueError(f"float (mode F) pixel values in [{values.min():g}, "
                       f"{values.max():g}], not [0, 1]: no known scale to 8 "
                       "bits")
    scaled = values * 255
  else:
    if values.min() < 0 or values.max() > 65535:
      raise ValueError(f"32-bit integer pixel values in [{values.min():g}, "
                       f"{values.max():g}], beyond 16 bits: no known scale "
                       "to 8 bits")
    scaled = values / 257
  return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def center_crop_square(image: Image.Image) -> Image.Image:
  """Returns the largest centred square of `image` (an exact pixel crop)."""
  width, height = image.size
  side = min(width, height)
  left, upper = (width - side) // 2, (height - side) // 2
  return image.crop((left, upper, left + side, upper + side))


def resize_square(image: Image.Image, resolution: int,
                  box: Box | None = None) -> Image.Image:
  """Resamples `image`, or a square region of it, to a square.

  Args:
    image: The source image.
    resolution: Side of the output, in pixels.
    box: (left, upper, right, lower) region of `image`, possibly fractional;
      None for the whole image. The filter treats the region as a window on a
      continuous image, so its taps near the border read the pixels just
      outside the box (crop first with `center_crop_square` for a hard cut).

  Returns:
    The antialiased (Lanczos) `resolution` x `resolution` image.
  """
  return image.resize((resolution, resolution), Image.Resampling.LANCZOS,
                      box=box)


def encode_png(image: Image.Image) -> bytes:
  """Returns the lossless PNG encoding of `image` (deterministic bytes)."""
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def square_png(path: str | os.PathLike, resolution: int) -> bytes:
  """Decodes `path`, centre-crops it square, resizes it and encodes a PNG.

  Args:
    path: The source image file.
    resolution: Side of the output, in pixels.

  Returns:
    PNG bytes of a `resolution` x `resolution` RGB image.

  Raises:
    One of `UNREADABLE_IMAGE_ERRORS` if the file cannot be decoded.
  """
  return encode_png(
      resize_square(center_crop_square(open_rgb(path)), resolution))
