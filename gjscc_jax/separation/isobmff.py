"""Reads the coded image out of a HEIF or AVIF file (ISO base media boxes).

HEIF (HEVC) and AVIF (AV1) still images are ISO/IEC 14496-12 box trees: an
`ftyp` box, a `meta` box describing items and their properties (`hdlr`,
`pitm`, `iloc`, `iinf`, `iprp` with `hvcC`/`av1C`, `ispe`, `colr`, `pixi`,
`ipma`) and an `mdat` box with the coded data. Only the coded data and the
decoder configuration's parameter sets are needed by a receiver that already
knows the image size, the codec and the colour conventions; everything else is
container. This module finds those parts (it reads, it never writes):

* `primary_item_data(file)`: the bytes of the primary item, from its `iloc`
  extents (construction method 0: file offsets);
* `property_box(file, 'hvcC')`: the payload of the one property box of a type
  inside `meta/iprp/ipco`;
* `hvcc_nal_units(hvcc)`: the parameter-set NAL units (VPS, SPS, PPS, ...)
  stored in an HEVC decoder configuration record (ISO/IEC 14496-15, 8.3.3)
  and its NAL length-field size;
* `split_length_prefixed(data, length_size)`: the NAL units of item data
  stored as `length || NAL` records.

Files with several images (grids, thumbnails, depth or alpha planes) are
rejected with a clear error: the separation baseline codes one image per file.
"""

import struct

#: Boxes whose payload is a list of child boxes (after `_FULL_BOX_HEADER`
#: bytes of version and flags for full boxes).
_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"dinf": 0}


def iter_boxes(data, start=0, end=None):
  """Yields `(type, payload_start, payload_end)` of the boxes in `data[start:end]`.

  Args:
    data: bytes of a box sequence (a whole file, or a container's payload).
    start: offset of the first box.
    end: offset just past the last box (default `len(data)`).

  Raises:
    ValueError: for a box that runs past `end` or is shorter than its header.
  """
  end = len(data) if end is None else end
  pos = start
  while pos < end:
    if end - pos < 8:
      raise ValueError(f"Truncated box header at offset {pos}.")
    size, box_type = struct.unpack(">I4s", data[pos:pos + 8])
    header = 8
    if size == 1:
      size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
      header = 16
    elif size == 0:
      size = end - pos
    if size < header or pos + size > end:
      raise ValueError(f"Box {box_type!r} at offset {pos} has an invalid "
                       f"size {size} (data ends at {end}).")
    yield box_type, pos + header, pos + size
    pos += size


def find_box(data, path):
  """`(payload_start, payload_end)` of the box at `path`, e.g. `'meta/iloc'`.

  Container boxes listed in `_CONTAINERS` are descended into; `meta` is a full
  box (4 bytes of version and flags before its children).

  Raises:
    ValueError: if a box on the path is missing or occurs more than once.
  """
  start, end = 0, len(data)
  for depth, name in enumerate(path.split("/")):
    if depth:
      start += _CONTAINERS.get(path.split("/")[depth - 1].encode(), 0)
    found = [(s, e) for t, s, e in iter_boxes(data, start, end)
             if t == name.encode()]
    if len(found) != 1:
      raise ValueError(f"Expected exactly one {name!r} box on the path "
                       f"{path!r}; found {len(found)}.")
    start, end = found[0]
  return start, end


def property_box(data, box_type):
  """Payload bytes of the one `box_type` property in `meta/iprp/ipco`.

  Raises:
    ValueError: if there is not exactly one such property (a file with
      several coded images).
  """
  start, end = find_box(data, "meta/iprp/ipco")
  found = [data[s:e] for t, s, e in iter_boxes(data, start, end)
           if t == box_type.encode()]
  if len(found) != 1:
    raise ValueError(
        f"Expected one {box_type!r} property; found {len(found)}. The "
        "separation baseline codes one image per file (no grid, thumbnail, "
        "alpha or depth items).")
  return found[0]


def _uint(data, pos, size):
  return int.from_bytes(data[pos:pos + size], "big"), pos + size


def primary_item_data(data):
  """The coded bytes of the primary item (concatenated `iloc` extents).

  Args:
    data: a whole HEIF/AVIF file.

  Returns:
    bytes: the item's data (for HEVC: length-prefixed NAL units; for AV1: OBUs).

  Raises:
    ValueError: for an `iloc` that uses a construction method other than file
      offsets, an open-ended extent, or a primary item it does not list.
  """
  start, _ = find_box(data, "meta/pitm")
  version = data[start]
  primary, _ = _uint(data, start + 4, 2 if version == 0 else 4)
  start, _ = find_box(data, "meta/iloc")
  version = data[start]
  pos = start + 4
  offset_size, length_size = data[pos] >> 4, data[pos] & 15
  base_offset_size, index_size = data[pos + 1] >> 4, data[pos + 1] & 15
  pos += 2
  count, pos = _uint(data, pos, 2 if version < 2 else 4)
  for _ in range(count):
    item_id, pos = _uint(data, pos, 2 if version < 2 else 4)
    method = 0
    if version in (1, 2):
      method, pos = _uint(data, pos, 2)
      method &= 15
    pos += 2  # data_reference_index
    base, pos = _uint(data, pos, base_offset_size)
    extents, pos = _uint(data, pos, 2)
    chunks = []
    for _ in range(extents):
      if version in (1, 2) and index_size:
        pos += index_size
      offset, pos = _uint(data, pos, offset_size)
      length, pos = _uint(data, pos, length_size)
      if length == 0:
        raise ValueError("Open-ended iloc extents are not supported.")
      chunks.append(data[base + offset:base + offset + length])
    if item_id == primary:
      if method != 0:
        raise ValueError(f"iloc construction method {method} is not "
                         "supported (only file offsets, method 0).")
      return b"".join(chunks)
  raise ValueError(f"The primary item {primary} has no iloc entry.")


def hvcc_nal_units(hvcc):
  """Parameter-set NAL units of an `hvcC` record, and the NAL length size.

  Args:
    hvcc: payload of an `hvcC` box (HEVCDecoderConfigurationRecord).

  Returns:
    `(nal_units, length_size)`: a list of NAL unit bytes in stored order
    (usually VPS, SPS, PPS), and the size in bytes (1, 2 or 4) of the length
    field before every NAL unit of the item data.
  """
  length_size = (hvcc[21] & 3) + 1
  num_arrays = hvcc[22]
  pos, nal_units = 23, []
  for _ in range(num_arrays):
    pos += 1  # array_completeness, reserved, NAL_unit_type
    num_nalus, pos = _uint(hvcc, pos, 2)
    for _ in range(num_nalus):
      size, pos = _uint(hvcc, pos, 2)
      nal_units.append(hvcc[pos:pos + size])
      pos += size
  return nal_units, length_size


def split_length_prefixed(data, length_size):
  """Splits `length || NAL || length || NAL ...` into a list of NAL units.

  Raises:
    ValueError: if a length runs past the end of `data`.
  """
  pos, nal_units = 0, []
  while pos < len(data):
    size, pos = _uint(data, pos, length_size)
    if pos + size > len(data):
      raise ValueError("A NAL unit length runs past the end of the item data.")
    nal_units.append(data[pos:pos + size])
    pos += size
  return nal_units
