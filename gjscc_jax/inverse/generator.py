"""A generator seen as a chain of synthesis blocks: what ILO needs of it.

Intermediate Layer Optimization walks up a StyleGAN2 synthesis network block
by block, so the optimiser needs a few facts and one function from the
generator, collected in `LayeredGenerator`:

* Blocks are numbered from the input: block 0 works at 4x4, block `k` at
  `4 * 2**k`, the last block at the output resolution. Block `k` maps the
  feature map `x` of block `k - 1` (none for block 0, which starts from a
  learned constant) and the skip image `img` (the RGB image summed so far)
  to its own `(x, img)`.
* Every synthesis layer adds a noise map of shape `(r, r, 1)` at its block's
  resolution `r`; `noise_blocks[i]` is the block of noise layer `i`, in the
  order the network consumes them.
* `run_blocks(params, ws, noises, start_block, end_block, x, img)` runs
  blocks `start_block..end_block` (inclusive) on a *batch*: `ws` is W+
  `(B, num_ws, w_dim)`, `noises` a tuple of `(B, r, r, 1)` maps (one per
  noise layer, all of them), `x`/`img` the batch entering `start_block`
  (None when it is 0). It returns `(x, img)` after `end_block`; after the
  last block `img` is the generated image, NHWC in [-1, 1] (not clipped).
  It must be a pure function of its arguments, traceable under `jit`/`vmap`/
  `grad`.

`stylegan2_layers(generator, params)` builds one from the project's Flax
StyleGAN2 (`gjscc_jax.models.stylegan2`).
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class LayeredGenerator:
  """Static description of a block-structured generator (see module doc).

  Attributes:
    resolution: Output side in pixels (`4 * 2**(num_blocks - 1)`).
    num_ws: Rows of W+.
    w_dim: Width of one W+ row.
    block_channels: Channels of the feature map each block outputs.
    noise_blocks: Block index of every noise layer, in consumption order.
    run_blocks: The batched block runner described in the module docstring.
    w_avg: `params -> (w_dim,)`, the generator's average latent.
  """
  resolution: int
  num_ws: int
  w_dim: int
  block_channels: tuple[int, ...]
  noise_blocks: tuple[int, ...]
  run_blocks: Callable[..., tuple[Any, Any]] = dataclasses.field(
      compare=False, repr=False)
  w_avg: Callable[[Any], Any] = dataclasses.field(compare=False, repr=False)

  def __post_init__(self):
    expected = 4 * 2 ** (self.num_blocks - 1)
    if self.resolution != expected:
      raise ValueError(
          f"A generator with {self.num_blocks} blocks outputs "
          f"{expected}x{expected} images, not {self.resolution}.")
    if any(not 0 <= b < self.num_blocks for b in self.noise_blocks):
      raise ValueError(f"noise_blocks {self.noise_blocks} must lie in "
                       f"[0, {self.num_blocks}).")

  @property
  def num_blocks(self) -> int:
    return len(self.block_channels)

  def block_resolution(self, block: int) -> int:
    """Side of block `block`'s feature map: `4 * 2**block`."""
    return 4 * 2 ** block

  def feature_shape(self, block: int) -> tuple[int, int, int]:
    """`(H, W, C)` of the feature map block `block` outputs (one image)."""
    r = self.block_resolution(block)
    return (r, r, self.block_channels[block])

  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """`(r, r, 1)` of every noise map (one image), in consumption order."""
    return tuple((self.block_resolution(b), self.block_resolution(b), 1)
                 for b in self.noise_blocks)

  def synthesize_one(self, params, ws, noises, start_block=0, x=None,
                     img=None):
    """The output image of ONE image's variables (no batch axis).

    Args:
      params: Generator parameters.
      ws: `(num_ws, w_dim)`.
      noises: Tuple of `(r, r, 1)` maps, one per noise layer.
      start_block: First block to run; `x`/`img` enter it.
      x: `(H, W, C)` feature map entering `start_block` (None for block 0).
      img: `(H, W, 3)` skip image entering `start_block` (None for block 0).

    Returns:
      `(resolution, resolution, 3)`.
    """
    return self.blocks_one(params, ws, noises, start_block,
                           self.num_blocks - 1, x, img)[1]

  def blocks_one(self, params, ws, noises, start_block, end_block, x=None,
                 img=None):
    """`run_blocks` for ONE image: adds and removes a batch axis of 1."""
    add = lambda a: None if a is None else a[None]
    x, img = self.run_blocks(params, ws[None], tuple(n[None] for n in noises),
                             start_block, end_block, add(x), add(img))
    return x[0], img[0]


def stylegan2_layers(generator, params) -> LayeredGenerator:
  """A `LayeredGenerator` view of a `gjscc_jax.models.stylegan2` generator.

  Args:
    generator: The Flax generator module returned by `load_stylegan2`.
    params: Its variables (used only to read static shapes here).
  """
  from gjscc_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  return stylegan2.layered_view(generator, params, LayeredGenerator)

