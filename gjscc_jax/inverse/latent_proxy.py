"""PULSE's Gaussianised latent space: a per-coordinate proxy of the mapping.

ILO (after PULSE) does not search W+ directly. It searches one Gaussian
vector `z` per W+ row and maps it to W with a fitted proxy of the mapping
network's last activation,

  `w = lrelu_0.2(std * z + mean)`,

where `mean` and `std` are, per coordinate, the mean and the (unbiased)
standard deviation of `lrelu_5(mapping(z))` over many `z ~ N(0, I)`:
`lrelu_5` (leaky ReLU with slope 5) inverts the mapping's final
`lrelu_0.2`, so its output is the last layer's pre-activation, which is
close to Gaussian. Since both leaky ReLUs are positively homogeneous, the
activation gain `sqrt(2)` of StyleGAN2's layers passes through unchanged:
for `z` the proxy's input is distributed like that pre-activation, and its
output like real mapping outputs, coordinate by coordinate.

A fit is a pure function of the generator's mapping weights, the number of
samples and the seed: `fit` draws chunk `c` from `fold_in(PRNGKey(seed), c)`
and combines the per-chunk statistics in float64 (Chan's parallel update),
so two fits are identical. `load_or_fit` caches it in an `.npz` file whose
provenance (samples, seed, a SHA-256 of the mapping weights) is checked
before reuse.
"""

import hashlib
import json
import os

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

#: Samples of the fit: 2**20 (PULSE and ILO use 10**6).
PROXY_SAMPLES = 2 ** 20
#: Seed of the fit's latents (PULSE: `torch.manual_seed(0)`).
PROXY_SEED = 0
#: Latents per chunk of the fit (`PROXY_SAMPLES` is a multiple of it).
CHUNK = 2 ** 14
#: Negative slope of StyleGAN2's mapping activation.
SLOPE = 0.2
#: Name of a cached fit beside the generator or in a run directory.
FILE_NAME = "gaussian_fit.npz"


def leaky_relu(x, slope):
  return jnp.where(x >= 0, x, slope * x)


def to_w(z, proxy):
  """`lrelu_0.2(std * z + mean)`: Gaussian latents `(..., w_dim)` to W."""
  return leaky_relu(proxy["std"] * z + proxy["mean"], SLOPE)


def mapping_fingerprint(variables) -> str:
  """SHA-256 of the mapping network's parameters (names, shapes, bytes)."""
  flat = traverse_util.flatten_dict(
      jax.device_get(variables["params"]["mapping"]), sep="/")
  digest = hashlib.sha256()
  for name in sorted(flat):
    array = np.ascontiguousarray(np.asarray(flat[name], np.float32))
    digest.update(f"{name}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def fit(generator, variables, samples=PROXY_SAMPLES, seed=PROXY_SEED,
        chunk=CHUNK):
  """Fits the proxy to a generator's mapping network.

  Args:
    generator: A `LayeredGenerator` with a mapping network (`map`).
    variables: Its variables.
    samples: Number of latents (a multiple of `chunk`).
    seed: Seed of the latents.
    chunk: Latents per device call.

  Returns:
    `{'mean': (w_dim,), 'std': (w_dim,)}` float32 numpy arrays: the mean
    and unbiased standard deviation of `lrelu_5(mapping(z))`.
  """
  if generator.map is None:
    raise ValueError("This generator has no mapping network to fit the "
                     "z_proxy to; use latent_space='w_plus'.")
  if samples < 2 or samples % chunk:
    raise ValueError(f"samples={samples} must be a multiple of chunk="
                     f"{chunk} (and > 1).")

  @jax.jit
  def chunk_stats(index):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    z = jax.random.normal(key, (chunk, generator.z_dim), jnp.float32)
    w = generator.map(variables, z)[:, 0]
    pre = leaky_relu(w, 1.0 / SLOPE)
    mean = jnp.mean(pre, 0)
    return mean, jnp.sum(jnp.square(pre - mean), 0)

  count, mean, m2 = 0, None, None
  for index in range(samples // chunk):
    c_mean, c_m2 = (np.asarray(a, np.float64) for a in chunk_stats(index))
    if mean is None:
      count, mean, m2 = chunk, c_mean, c_m2
      continue
    total = count + chunk
    delta = c_mean - mean
    mean = mean + delta * chunk / total
    m2 = m2 + c_m2 + np.square(delta) * count * chunk / total
    count = total
  return dict(mean=mean.astype(np.float32),
              std=np.sqrt(m2 / (count - 1)).astype(np.float32))


def provenance(variables, samples=PROXY_SAMPLES, seed=PROXY_SEED) -> dict:
  """What a fit depends on (stored with it, recorded in run_config.json)."""
  return dict(formula="lrelu_0.2(std * z + mean); mean, std of "
                      "lrelu_5(mapping(z)), z ~ N(0, I)",
              samples=int(samples), seed=int(seed),
              mapping_sha256=mapping_fingerprint(variables))


def read(path):
  """`(proxy, provenance)` of a cached fit."""
  with np.load(path, allow_pickle=False) as npz:
    return (dict(mean=npz["mean"], std=npz["std"]),
            json.loads(str(npz["provenance"])))


def write(path, proxy, info) -> None:
  """Writes a fit atomically (temporary file, then rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}"
                     ".npz")
  np.savez(tmp, mean=proxy["mean"], std=proxy["std"],
           provenance=np.asarray(json.dumps(info, sort_keys=True)))
  os.replace(tmp, path)


def load_or_fit(paths, generator, variables, samples=PROXY_SAMPLES,
                seed=PROXY_SEED):
  """The proxy of a generator, from the first cache that matches, or fitted.

  Args:
    paths: Candidate cache files, in order of preference (e.g. beside the
      converted weights, then in the run directory). A file whose provenance
      differs (other weights, samples or seed) is ignored. A new fit is
      written to the first path whose directory is writable.
    generator, variables: The `LayeredGenerator` and its variables.
    samples, seed: As in `fit`.

  Returns:
    `(proxy, provenance, path)`: the fit, its provenance and the file it
    was read from or written to (None if none was writable).
  """
  info = provenance(variables, samples, seed)
  for path in paths:
    if os.path.exists(path):
      proxy, stored = read(path)
      if stored == info:
        return proxy, info, path
  proxy = fit(generator, variables, samples, seed)
  for path in paths:
    try:
      write(path, proxy, info)
      return proxy, info, path
    except OSError:
      continue
  return proxy, info, None
