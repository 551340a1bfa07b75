"""Standard image codecs for the separation baseline, and what they send.

Every codec here is a maintained library; none is hand-written:

| name       | codec                       | library (package)                  |
|------------|-----------------------------|------------------------------------|
| `heif`     | HEVC intra (x265, libde265) | `pillow_heif` (pillow-heif)        |
| `jpeg2000` | JPEG 2000 (OpenJPEG)        | `imagecodecs` (imagecodecs)        |
| `webp`     | WebP lossy, VP8 (libwebp)   | `imagecodecs` (imagecodecs)        |
| `avif`     | AV1 intra (libavif + aom)   | `imagecodecs` (imagecodecs)        |
| `jpeg`     | JPEG (libjpeg-turbo)        | `imagecodecs` (imagecodecs)        |

BPG, the codec of the DeepJSCC literature's separation curves, is HEVC intra
in its own small container; `heif` is the same coding tool (x265 in libheif;
pillow-heif 1.x dropped its AVIF encoder, so AVIF comes from imagecodecs).

**What is counted (the payload).** A codec's file holds the coded image plus
a container and metadata that a receiver which already knows the image size,
the codec and its settings does not need: it rebuilds them itself, like the
learned schemes' decoders know their resolution. The payload is the bytes
such a receiver must get; it is what the bit budget is charged for. Every
payload format below is self-delimiting (start codes, marker segments, OBU or
partition sizes), so the zero padding up to the channel block needs no length
field; the payload's total length itself is not counted.

* `jpeg`: the JPEG stream minus its APPn (JFIF) and COM marker segments; SOI,
  quantisation and (optimised) Huffman tables, SOF, SOS, entropy-coded data
  and EOI are counted. The receiver decodes exactly the payload (3
  components with ids 1, 2, 3 are YCbCr by the libjpeg convention).
* `jpeg2000`: the raw J2K codestream (no JP2 boxes) minus its COM marker
  segments (OpenJPEG writes "Created by OpenJPEG version ..."); SOC, SIZ,
  COD, QCD, SOT, SOD, packets and EOC are counted. Decoded from the payload.
* `webp`: the VP8 key frame (the data of the `VP8 ` chunk, its own 10-byte
  frame header included); the 12-byte RIFF header and the 8-byte chunk header
  are not counted. The receiver rebuilds them from the payload's length and
  decodes that file.
* `heif`: the HEVC elementary stream in Annex B byte-stream format: VPS, SPS
  and PPS (from the `hvcC` box) and the coded slice NAL units (from the
  primary item's data), each after a start code (4 bytes for parameter sets
  and the first slice, 3 for later slices, as Annex B requires); SEI, access
  unit delimiter, end-of-sequence and filler NAL units are not counted
  (decoders ignore them). The `ftyp` and `meta` boxes (item info, location,
  `ispe` size, `colr` matrix, `pixi` bit depth, property associations) and the
  `mdat` header are container, together about 300 bytes that are the same for
  every image of one size and settings. BPG replaces VPS and SPS by a compact
  header of a few bytes, so counting them in full (about 65 bytes) makes this
  slightly pessimistic against BPG. Decoded from the HEIF file, which carries
  exactly the counted NAL units.
* `avif`: the AV1 OBU stream of the primary item (temporal delimiter,
  sequence header and frame OBUs with their size fields: the AV1
  low-overhead bitstream format); the `ftyp`/`meta` boxes (with `av1C`,
  `ispe`, `colr`, `pixi`) and the `mdat` header are not counted. Decoded from
  the AVIF file, which carries exactly the counted OBUs.

**Headers known in advance (`headers='shared'`).** Part of every payload
above is a stream header that, at one image size and codec setting, is
byte-identical for every image: HEVC's VPS, SPS and PPS (86 bytes with start
codes at 64x64), J2K's SOC, SIZ, COD and QCD (about 94 bytes), JPEG's SOI,
quantisation tables and SOF (the optimised Huffman tables differ per image),
AV1's temporal delimiter and sequence header. `get_codec(name,
headers='shared')` assumes the receiver holds these, as it holds the size
and the settings (BPG goes most of the way: it drops the VPS and codes the
SPS in a few bytes): the longest run of leading header units that equals
that of a mid-gray image coded at the same size and quality is not counted.
The receiver puts the same units back in front: `jpeg` and `jpeg2000` are
decoded from exactly `shared + payload`. `headers='stream'` (the default)
counts the whole stream, what a standard decoder needs; at 64x64 the
difference decides whether anything fits a budget of a few hundred bits.
WebP has no shareable unit (its frame header carries the first partition's
size), so both accountings agree for it.

**Quality parameter.** `Codec.qualities` lists the values of the codec's own
quality knob in increasing quality (and, on natural images, increasing size):
`heif`, `webp`, `jpeg`: the library's 0/1..100 quality; `avif`: 0..99
(libavif's 100 is lossless, whose infinite PSNR no mean survives); `jpeg2000`:
OpenJPEG's fixed-quality target PSNR in dB, 10 to 60 in steps of 0.25 (it
saturates at about 55 dB on 8-bit photos). The search addresses qualities by
index into this tuple.
"""

import dataclasses
import importlib
import io
from typing import Callable, NamedTuple

import numpy as np

from gjscc_jax.separation import isobmff

#: The registered codec names.
CODECS = ("heif", "jpeg2000", "webp", "avif", "jpeg")


class Bitstream(NamedTuple):
  """One encoding of one image.

  Attributes:
    payload: the bytes a receiver must get (see the module docstring); the bit
      budget is charged `8 * len(payload)` bits.
    file: the bytes the library wrote (a complete file), for reference.
    header_units: the leading units of `payload` that form its stream header
      (NAL units, marker segments or OBUs), `payload` starts with their
      concatenation; candidates for `headers='shared'`.
    shared: header bytes the receiver knows in advance and puts in front of
      `payload` (empty for `headers='stream'`).
  """
  payload: bytes
  file: bytes
  header_units: tuple = ()
  shared: bytes = b""

  @property
  def bits(self) -> int:
    """Payload bits, `8 * len(payload)`."""
    return 8 * len(self.payload)


@dataclasses.dataclass(frozen=True)
class Codec:
  """A standard image codec with a monotone quality knob.

  Attributes:
    name: registry name (one of `CODECS`).
    display_name: for labels and plots, e.g. 'HEIF'.
    parameter: what the values of `qualities` mean.
    qualities: the quality knob's values, increasing quality.
    package: the pip package that provides it.
    header: how its payload is counted (one sentence).
    headers: 'stream' (count the whole stream) or 'shared' (the header units
      identical for every image of the size are known to the receiver).
  """
  name: str
  display_name: str
  parameter: str
  qualities: tuple
  package: str
  header: str
  _encode: Callable = dataclasses.field(repr=False)
  _decode: Callable = dataclasses.field(repr=False)
  headers: str = "stream"
  _references: dict = dataclasses.field(default_factory=dict, repr=False,
                                        compare=False)

  @property
  def num_qualities(self) -> int:
    return len(self.qualities)

  def encode(self, image, index: int) -> Bitstream:
    """Encodes one image at quality `qualities[index]`.

    Args:
      image: uint8 array `(H, W, 3)`.
      index: index into `qualities`, `0 <= index < num_qualities`.

    Returns:
      A `Bitstream` (payload and file bytes).
    """
    image = _check_image(image)
    if not 0 <= index < self.num_qualities:
      raise IndexError(f"Quality index {index} is out of range for codec "
                       f"{self.name!r} (0 to {self.num_qualities - 1}).")
    bitstream = self._encode(image, self.qualities[index])
    if self.headers == "stream":
      return bitstream
    key = (image.shape, index)
    if key not in self._references:
      gray = np.full(image.shape, 128, np.uint8)
      self._references[key] = self._encode(gray, self.qualities[index])
    return share_headers(bitstream, self._references[key].header_units)

  def decode(self, bitstream: Bitstream, shape) -> np.ndarray:
    """Decodes a `Bitstream` to a uint8 image of `shape` `(H, W, 3)`."""
    image = np.asarray(self._decode(bitstream))
    if image.ndim == 3 and image.shape[-1] == 4:
      image = image[..., :3]
    if image.shape != tuple(shape) or image.dtype != np.uint8:
      raise RuntimeError(
          f"Codec {self.name!r} decoded a {image.dtype} image of shape "
          f"{image.shape}; expected uint8 {tuple(shape)}.")
    return image


def share_headers(bitstream, known_units):
  """Drops the leading header units that equal `known_units`, in order.

  Returns:
    A `Bitstream` whose `payload` lacks the common leading units and whose
    `shared` holds them, so `shared + payload` is the whole stream.
  """
  count = 0
  for unit, known in zip(bitstream.header_units, known_units):
    if unit != known:
      break
    count += 1
  shared = b"".join(bitstream.header_units[:count])
  assert bitstream.payload.startswith(shared)
  return Bitstream(bitstream.payload[len(shared):], bitstream.file,
                   bitstream.header_units[count:], shared)


def _check_image(image):
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError("Codecs take one uint8 RGB image (H, W, 3); got "
                     f"{image.dtype} of shape {image.shape}.")
  return np.ascontiguousarray(image)


def _import(module, codec, package):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(
        f"The separation codec {codec!r} needs the package {package!r}, which "
        f"is not installed: pip install {package} (it is a dependency of "
        "gjscc-jax: pip install -e .).") from e


def _imagecodecs(codec, attribute):
  module = _import("imagecodecs", codec, "imagecodecs")
  if not getattr(module, attribute).available:
    raise ImportError(
        f"The installed imagecodecs has no {attribute} codec (needed by "
        f"{codec!r}); install an imagecodecs wheel built with it: pip install "
        "--force-reinstall imagecodecs.")
  return module


# --- Marker-segment formats: JPEG and JPEG 2000 ------------------------------


def _marker_units(stream, first_marker_end, stop, drop):
  """Splits a JPEG/J2K stream into header units and the rest.

  `stream[:first_marker_end]` (SOI or SOC) is the first unit; after it come
  marker segments `FF xx LL LL ...` (the length counts its own two bytes)
  until marker `stop` (SOS or SOT), from which on everything is the body.
  Segments whose marker is in `drop` are removed.

  Returns:
    `(header_units, body)`: a tuple of bytes, and bytes.
  """
  units, pos = [stream[:first_marker_end]], first_marker_end
  while True:
    if stream[pos] != 0xFF:
      raise ValueError(f"Expected a marker at offset {pos}.")
    marker = stream[pos + 1]
    if marker == stop:
      return tuple(units), stream[pos:]
    length = int.from_bytes(stream[pos + 2:pos + 4], "big")
    if marker not in drop:
      units.append(stream[pos:pos + 2 + length])
    pos += 2 + length


def _with_units(units, body, file):
  return Bitstream(b"".join(units) + body, file, units)


_JPEG_DROP = frozenset(range(0xE0, 0xF0)) | {0xFE}  # APP0..APP15, COM


def _jpeg_encode(image, quality):
  imagecodecs = _imagecodecs("jpeg", "JPEG8")
  file = bytes(imagecodecs.jpeg8_encode(image, level=int(quality),
                                        optimize=True))
  return _with_units(*_marker_units(file, 2, 0xDA, _JPEG_DROP), file)


def _jpeg_decode(bitstream):
  return _imagecodecs("jpeg", "JPEG8").jpeg8_decode(
      bitstream.shared + bitstream.payload)


def _j2k_encode(image, target_psnr):
  imagecodecs = _imagecodecs("jpeg2000", "JPEG2K")
  file = bytes(imagecodecs.jpeg2k_encode(image, level=float(target_psnr),
                                         codecformat="J2K"))
  return _with_units(*_marker_units(file, 2, 0x90, {0x64}), file)


def _j2k_decode(bitstream):
  return _imagecodecs("jpeg2000", "JPEG2K").jpeg2k_decode(
      bitstream.shared + bitstream.payload)


# --- WebP: a RIFF file around one VP8 frame ----------------------------------


def _webp_encode(image, quality):
  imagecodecs = _imagecodecs("webp", "WEBP")
  file = bytes(imagecodecs.webp_encode(image, level=int(quality),
                                       lossless=False))
  if file[:4] != b"RIFF" or file[8:16] != b"WEBPVP8 ":
    raise RuntimeError("libwebp wrote an extended (VP8X) or lossless file; "
                       "expected the simple lossy format.")
  size = int.from_bytes(file[16:20], "little")
  return Bitstream(file[20:20 + size], file)


def _riff_webp(vp8):
  pad = b"\0" * (len(vp8) % 2)
  chunk = b"VP8 " + len(vp8).to_bytes(4, "little") + vp8 + pad
  return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk


def _webp_decode(bitstream):
  return _imagecodecs("webp", "WEBP").webp_decode(_riff_webp(bitstream.payload))


# --- HEIF (HEVC) and AVIF (AV1): ISO base media files ------------------------

#: HEVC NAL unit types a decoder needs from a still image: VCL (slices, 0-31)
#: and VPS, SPS, PPS (32-34). AUD (35), EOS (36), EOB (37), FD (38) and SEI
#: (39, 40) are not counted.
_HEVC_NEEDED = frozenset(range(35))
_HEVC_PARAMETER_SETS = frozenset((32, 33, 34))


def hevc_annexb_units(file):
  """The Annex B HEVC stream a receiver needs, from a HEIF file's bytes.

  Returns:
    `(units, body)`: the parameter-set NAL units with their start codes, and
    the slice NAL units with theirs, concatenated.
  """
  nal_units, length_size = isobmff.hvcc_nal_units(
      isobmff.property_box(file, "hvcC"))
  nal_units += isobmff.split_length_prefixed(
      isobmff.primary_item_data(file), length_size)
  units, body, first_slice = [], [], True
  for nal in nal_units:
    nal_type = (nal[0] >> 1) & 0x3F
    if nal_type not in _HEVC_NEEDED:
      continue
    if nal_type in _HEVC_PARAMETER_SETS:
      if body:
        raise ValueError("A parameter set follows a slice in the HEIF item.")
      units.append(b"\0\0\0\1" + nal)
    else:
      body.append((b"\0\0\0\1" if first_slice else b"\0\0\1") + nal)
      first_slice = False
  return tuple(units), b"".join(body)


def _heif_encode(image, quality):
  pillow_heif = _import("pillow_heif", "heif", "pillow-heif")
  height, width, _ = image.shape
  heif = pillow_heif.from_bytes(mode="RGB", size=(width, height),
                                data=image.tobytes())
  buffer = io.BytesIO()
  heif.save(buffer, quality=int(quality), chroma=420)
  file = buffer.getvalue()
  return _with_units(*hevc_annexb_units(file), file)


def _heif_decode(bitstream):
  pillow_heif = _import("pillow_heif", "heif", "pillow-heif")
  heif = pillow_heif.open_heif(io.BytesIO(bitstream.file),
                               convert_hdr_to_8bit=True)
  return np.asarray(heif[0])


#: libavif encoder speed (0 slowest/best .. 10 fastest); 6 is avifenc's default.
AVIF_SPEED = 6


#: AV1 OBU types that carry the picture (frame header, tile group, frame).
_AV1_PICTURE_OBUS = frozenset((3, 4, 6, 7))


def av1_header_units(obus):
  """Splits AV1 OBUs (low-overhead format) into the leading non-picture OBUs
  (temporal delimiter, sequence header) and the rest.

  Returns:
    `(units, body)`: a tuple of OBUs, and the remaining bytes.
  """
  units, pos = [], 0
  while pos < len(obus):
    header = obus[pos]
    obu_type, extension, has_size = (header >> 3) & 15, header & 4, header & 2
    if obu_type in _AV1_PICTURE_OBUS or not has_size:
      break
    start, pos = pos, pos + 1 + (1 if extension else 0)
    size, shift = 0, 0
    while True:  # leb128
      byte = obus[pos]
      size |= (byte & 0x7F) << shift
      pos, shift = pos + 1, shift + 7
      if not byte & 0x80:
        break
    pos += size
    units.append(obus[start:pos])
  return tuple(units), obus[pos:]


def _avif_encode(image, quality):
  imagecodecs = _imagecodecs("avif", "AVIF")
  file = bytes(imagecodecs.avif_encode(image, level=int(quality),
                                       speed=AVIF_SPEED, pixelformat="420"))
  isobmff.property_box(file, "av1C")  # one coded image
  return _with_units(*av1_header_units(isobmff.primary_item_data(file)), file)


def _avif_decode(bitstream):
  return _imagecodecs("avif", "AVIF").avif_decode(bitstream.file)


# --- Registry -------------------------------------------------------------------

_INT_0_100 = tuple(range(101))

_REGISTRY = {
    "heif": dict(
        display_name="HEIF", parameter="pillow-heif quality (x265, 4:2:0)",
        qualities=_INT_0_100, package="pillow-heif", _encode=_heif_encode,
        _decode=_heif_decode,
        header="HEVC Annex B stream: VPS+SPS+PPS+slices with start codes; "
               "HEIF boxes not counted"),
    "jpeg2000": dict(
        display_name="JPEG 2000",
        parameter="OpenJPEG fixed-quality target PSNR (dB)",
        qualities=tuple(10.0 + 0.25 * i for i in range(201)),
        package="imagecodecs", _encode=_j2k_encode, _decode=_j2k_decode,
        header="J2K codestream without COM segments; no JP2 boxes"),
    "webp": dict(
        display_name="WebP", parameter="libwebp lossy quality",
        qualities=_INT_0_100, package="imagecodecs", _encode=_webp_encode,
        _decode=_webp_decode,
        header="VP8 frame; 20-byte RIFF/chunk header not counted"),
    "avif": dict(
        display_name="AVIF",
        parameter=f"libavif quality (aom, speed {AVIF_SPEED}, 4:2:0)",
        qualities=tuple(range(100)), package="imagecodecs",
        _encode=_avif_encode,
        _decode=_avif_decode,
        header="AV1 OBUs of the image item; AVIF boxes not counted"),
    "jpeg": dict(
        display_name="JPEG",
        parameter="libjpeg-turbo quality (optimised Huffman tables)",
        qualities=tuple(range(1, 101)), package="imagecodecs",
        _encode=_jpeg_encode, _decode=_jpeg_decode,
        header="JPEG stream without APPn/COM segments"),
}


#: The header accountings `get_codec` accepts (see the module docstring).
HEADERS = ("stream", "shared")


def get_codec(name: str, headers: str = "stream") -> Codec:
  """The codec registered as `name`, after checking its library imports.

  Args:
    name: one of `CODECS`.
    headers: 'stream' counts the whole coded stream; 'shared' does not count
      the leading header units that are the same for every image of the size
      (see the module docstring).

  Raises:
    ValueError: for an unknown name or accounting (listing the valid ones).
    ImportError: when its package is missing, naming the package to install.
  """
  if name not in _REGISTRY:
    raise ValueError(f"Unknown codec {name!r}; choose one of "
                     f"{', '.join(CODECS)}.")
  if headers not in HEADERS:
    raise ValueError(f"headers={headers!r}: use one of {', '.join(HEADERS)}.")
  codec = Codec(name=name, headers=headers, **_REGISTRY[name])
  codec.encode(np.full((16, 16, 3), 128, np.uint8), codec.num_qualities - 1)
  return codec
