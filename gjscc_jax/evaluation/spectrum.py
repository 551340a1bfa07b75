"""Where an image's (or a feature map's) energy sits in frequency.

Two figures of periodic artefacts, both shares of the AC energy (the DC
term of every image and channel removed), summed over images and channels:

* `nyquist_fraction(x)`: the share at the Nyquist frequency of either
  axis (index `r / 2` of an `r`-point FFT). A 2-pixel checkerboard
  `(-1)^(i + j)` has all of its energy there; smooth content almost none.
* `lattice_fraction(x, period)`: the share on the lattice of frequencies
  that repeat every `period` pixels (indices multiple of `R / period` on
  both axes, DC excluded): a block pattern of that period puts its energy
  there, natural images little.

Compare a scheme's figure with the data's own (`downsample` brings the
images to a map's scale): a ratio above 1 is energy the data do not have.
"""

import numpy as np


def ac_power(x):
  """`(H, W)` power spectrum of `(..., H, W, C)` summed over all but H, W.

  Each image's and channel's mean is removed first; spectra of several
  arrays of the same side add up (`nyquist_fraction` takes the sum).
  """
  x = np.asarray(x, np.float64)
  x = x.reshape((-1,) + x.shape[-3:])
  x = x - x.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2
  return power.sum(axis=(0, 3))


def nyquist_fraction(x=None, power=None):
  """Share of the AC energy of `(B, r, r, C)` maps at the Nyquist frequency.

  Args:
    x: `(B, r, r, C)` array, `r` even.
    power: instead of `x`, its `(r, r)` `ac_power` (or a sum of them).

  Returns:
    A float in [0, 1]: the energy at row or column index `r / 2` of the
    2-D spectrum over the total AC energy (0 for constant maps).
  """
  shape = np.shape(x) if power is None else np.shape(power) + (1,)
  r = shape[-3]
  if r % 2 or shape[-2] != r:
    raise ValueError(f"nyquist_fraction needs square maps of even side; got "
                     f"{shape}.")
  power = ac_power(x) if power is None else np.asarray(power)
  total = power.sum()
  if total == 0:
    return 0.0
  nyquist = power[r // 2, :].sum() + power[:, r // 2].sum() - power[r // 2, r // 2]
  return float(nyquist / total)


def lattice_fraction(images, period):
  """Share of the AC energy of `(B, R, R, C)` images on a `period`-pixel lattice.

  Args:
    images: `(B, R, R, C)` array.
    period: the lattice's period in pixels; must divide `R`.

  Returns:
    A float in [0, 1]: energy at frequency indices `(k R / period,
    l R / period)`, `(k, l) != (0, 0)`, over the total AC energy.
  """
  size = np.shape(images)[-3]
  if size % period:
    raise ValueError(f"period={period} must divide the image side {size}.")
  power = ac_power(images)
  total = power.sum()
  if total == 0:
    return 0.0
  step = size // period
  return float(power[::step, ::step].sum() / total)


def downsample(images, size):
  """Box-filter `(B, R, R, C)` images to `(B, size, size, C)` (`size | R`)."""
  images = np.asarray(images, np.float64)
  b, r, _, c = images.shape
  f = r // size
  if r % size:
    raise ValueError(f"size={size} must divide the image side {r}.")
  return images.reshape(b, size, f, size, f, c).mean(axis=(2, 4))
