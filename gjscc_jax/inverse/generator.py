"""A generator seen as a chain of synthesis blocks: what ILO needs of it.

Intermediate Layer Optimization walks up a StyleGAN2 synthesis network block
by block, so the optimiser needs a few facts and one function from the
generator, collected in `LayeredGenerator` (indexing as in
`gjscc_jax.models.stylegan2.synthesis`):

* Blocks are numbered from the input: block 0 works at 4x4, block `k` at
  `4 * 2**k`, the last block at the output resolution. Block `k` maps the
  feature map `x` of block `k - 1` (none for block 0, which starts from a
  learned constant) and the skip image `img` (the RGB image summed so far)
  to its own `(x, img)`.
* Every synthesis layer adds a noise map of shape `(r, r, 1)` at its block's
  resolution `r`, scaled by the layer's learned noise strength;
  `noise_blocks[l]` is the block of noise layer `l`.
* `apply(variables, ws, noises, start_block, end_block, x, img)` runs blocks
  `start_block .. end_block - 1` on a *batch*: `ws` is W+
  `(B, num_ws, w_dim)`, `noises` a tuple of `(B, r, r, 1)` maps (one per
  noise layer, all of them), `x`/`img` the batch entering `start_block`
  (None when it is 0). It returns the image `(B, R, R, 3)` in [-1, 1]
  (unclipped) when `end_block == num_blocks`, else `(x, img)` after block
  `end_block - 1`. It is pure and traceable under `jit`/`vmap`/`grad`.

`from_stylegan2` builds one from the project's Flax StyleGAN2.
"""

import dataclasses
from typing import Any, Callable

from gjscc_jax.models import stylegan2
# The demo prior lives with the model; imported here for the ILO callers.
from gjscc_jax.models.stylegan2.random_init import random_stylegan2  # pylint: disable=unused-import


@dataclasses.dataclass(frozen=True)
class LayeredGenerator:
  """Static description of a block-structured generator (see module doc).

  Attributes:
    resolution: Output side in pixels (`4 * 2**(num_blocks - 1)`).
    num_ws: Rows of W+.
    w_dim: Width of one W+ row.
    block_channels: Channels of the feature map each block outputs.
    noise_blocks: Block index of every noise layer, in layer order.
    apply: The batched block runner described in the module docstring.
    w_avg: `variables -> (w_dim,)`, the generator's average latent.
  """
  resolution: int
  num_ws: int
  w_dim: int
  block_channels: tuple[int, ...]
  noise_blocks: tuple[int, ...]
  apply: Callable[..., Any] = dataclasses.field(repr=False)
  w_avg: Callable[[Any], Any] = dataclasses.field(repr=False)

  def __post_init__(self):
    expected = self.block_resolution(self.num_blocks - 1)
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

  @staticmethod
  def block_resolution(block: int) -> int:
    """Side of block `block`'s feature map: `4 * 2**block`."""
    return 4 * 2 ** block

  def feature_shape(self, block: int) -> tuple[int, int, int]:
    """`(H, W, C)` of the feature map block `block` outputs (one image)."""
    r = self.block_resolution(block)
    return (r, r, self.block_channels[block])

  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """`(r, r, 1)` of every noise map (one image), in layer order."""
    return tuple((self.block_resolution(b), self.block_resolution(b), 1)
                 for b in self.noise_blocks)

  def _apply_one(self, variables, ws, noises, start_block, end_block, x, img):
    add = lambda a: None if a is None else a[None]
    out = self.apply(variables, ws[None], tuple(n[None] for n in noises),
                     start_block, end_block, add(x), add(img))
    return _drop_batch(out)

  def synthesize_one(self, variables, ws, noises, start_block=0, x=None,
                     img=None):
    """The output image `(R, R, 3)` of ONE image's variables (no batch axis).

    Args:
      variables: Generator variables.
      ws: `(num_ws, w_dim)`.
      noises: Tuple of `(r, r, 1)` maps, one per noise layer.
      start_block: First block to run; `x`/`img` enter it.
      x: `(H, W, C)` feature map entering `start_block` (None for block 0).
      img: `(H, W, 3)` skip image entering `start_block` (None for block 0).
    """
    return self._apply_one(variables, ws, noises, start_block,
                           self.num_blocks, x, img)

  def blocks_one(self, variables, ws, noises, start_block, end_block, x=None,
                 img=None):
    """`(x, img)` of ONE image after blocks `start_block .. end_block - 1`
    (`end_block < num_blocks`)."""
    if not start_block < end_block < self.num_blocks:
      raise ValueError(
          f"blocks_one runs blocks [{start_block}, {end_block}) and returns "
          f"features, so it needs start_block < end_block < {self.num_blocks}"
          "; use synthesize_one for the final image.")
    return self._apply_one(variables, ws, noises, start_block, end_block, x,
                           img)


def _drop_batch(tree):
  """Drops the leading axis of every array of a (possibly tuple) output."""
  if isinstance(tree, tuple):
    return tuple(None if a is None else a[0] for a in tree)
  return tree[0]


def from_stylegan2(generator) -> LayeredGenerator:
  """The `LayeredGenerator` view of a `gjscc_jax.models.stylegan2.Generator`.

  Args:
    generator: The Flax module, e.g. from `load_stylegan2(path)`; its
      variables are passed at call time (`frozen['generator']`).
  """
  def apply(variables, ws, noises, start_block, end_block, x, img):
    return generator.apply(
        variables, ws, noise=list(noises), start_block=start_block,
        end_block=end_block, x=x, img=img, method=generator.synthesize)

  # Layer 0 is block 0's conv1; layers 2k - 1 and 2k belong to block k.
  noise_blocks = tuple((layer + 1) // 2
                       for layer in range(generator.num_layers))
  return LayeredGenerator(
      resolution=generator.img_resolution, num_ws=generator.num_ws,
      w_dim=generator.w_dim,
      block_channels=tuple(c for _, _, c in generator.feature_shapes),
      noise_blocks=noise_blocks, apply=apply, w_avg=stylegan2.w_avg)
