r"""5G LDPC BP decoding throughput: ours (JAX) against Sionna 2.2 (PyTorch).

  nice -n 10 python -m benchmarks.ldpc_throughput \
      --output=benchmarks/results/ldpc_throughput.json

Both decoders get the same LLRs (BPSK over AWGN at an Eb/N0 where most
blocks decode), the same code (5G base graph and rate-matched length), the
same check-node rule, a fixed number of iterations (ours without early
stopping, which Sionna does not have), the same clipping (20) and batch.
Reported: decoded information bits per second (batch * K / median time
over repeats, after a warm-up call that compiles), and the block error
rates of both as a sanity check. Run on one host in one process, one
decoder after the other.
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
import jax
import numpy as np

from gjscc_jax.digital import basegraph
from gjscc_jax.digital import ldpc_decode
from gjscc_jax.digital import ldpc_encode
from gjscc_jax.digital import rate_matching

_CASES = flags.DEFINE_list(
    "cases", ["1000:2000:1", "500:1500:2"],
    "K:N:BG codes (information bits, rate-matched length, base graph).")
_ALGORITHMS = flags.DEFINE_list("algorithms", ["sum-product", "min-sum"],
                                "Check-node rules.")
_BATCH = flags.DEFINE_integer("batch", 256, "Code blocks per call.")
_ITERS = flags.DEFINE_integer("iterations", 20, "BP iterations.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per decoder.")
_EBNO = flags.DEFINE_float("ebno_db", 2.0, "Eb/N0 of the LLRs.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the results as JSON.")

_SIONNA_CN = {"sum-product": "boxplus-phi", "min-sum": "minsum",
              "offset-min-sum": "offset-minsum"}


def _median_time(fn, repeats):
  fn()  # warm-up (compiles)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _case(k, n, bg, algorithm, batch, iters, repeats, ebno):
  import torch  # pylint: disable=import-outside-toplevel
  from sionna.phy.fec.ldpc import LDPC5GDecoder  # pylint: disable=import-outside-toplevel
  from sionna.phy.fec.ldpc import LDPC5GEncoder  # pylint: disable=import-outside-toplevel
  code = basegraph.make_code(k, bg)
  rng = np.random.default_rng(0)
  u = rng.integers(0, 2, (batch, k))
  c = np.asarray(rate_matching.rate_match(code, ldpc_encode.encode(code, u),
                                          n, 1))
  sigma2 = 1.0 / (2 * k / n * 10 ** (ebno / 10))
  llr = (2 * (1 - 2 * c + np.sqrt(sigma2) * rng.standard_normal(c.shape))
         / sigma2).astype(np.float32)
  full = rate_matching.rate_recover(code, llr, 1)
  ours_out = {}

  def ours():
    bits, _, _ = ldpc_decode.decode(code, full, e=n, num_iter=iters,
                                    algorithm=algorithm, early_stop=False)
    ours_out["bits"] = np.asarray(jax.block_until_ready(bits))

  decoder = LDPC5GDecoder(LDPC5GEncoder(k, n, bg=f"bg{bg}"),
                          cn_update=_SIONNA_CN[algorithm], num_iter=iters,
                          hard_out=True, return_infobits=True)
  theirs_in = torch.tensor(-llr)
  theirs_out = {}

  def theirs():
    with torch.no_grad():
      theirs_out["bits"] = decoder(theirs_in).numpy()

  t_ours = _median_time(ours, repeats)
  t_theirs = _median_time(theirs, repeats)
  bler = lambda bits: float(np.mean(np.any(bits != u, axis=1)))
  return dict(
      k=k, n=n, bg=bg, z=code.z, algorithm=algorithm, batch=batch,
      iterations=iters, ebno_db=ebno,
      ours_s=t_ours, sionna_s=t_theirs,
      ours_bits_per_s=batch * k / t_ours,
      sionna_bits_per_s=batch * k / t_theirs,
      speedup=t_theirs / t_ours,
      ours_bler=bler(ours_out["bits"]), sionna_bler=bler(theirs_out["bits"]))


def main(argv):
  del argv
  import torch  # pylint: disable=import-outside-toplevel
  results = []
  for case in _CASES.value:
    k, n, bg = (int(x) for x in case.split(":"))
    for algorithm in _ALGORITHMS.value:
      r = _case(k, n, bg, algorithm, _BATCH.value, _ITERS.value,
                _REPEATS.value, _EBNO.value)
      results.append(r)
      print(f"K={k} N={n} BG{bg} {algorithm:>14}: ours "
            f"{r['ours_bits_per_s'] / 1e6:7.3f} Mbit/s, Sionna "
            f"{r['sionna_bits_per_s'] / 1e6:7.3f} Mbit/s, x{r['speedup']:.1f}"
            f" (BLER {r['ours_bler']:.3f} / {r['sionna_bler']:.3f})",
            flush=True)
  record = dict(
      host=dict(platform=platform.platform(), cpus=os.cpu_count(),
                load_average=os.getloadavg(), jax=jax.__version__,
                backend=jax.default_backend(), torch=torch.__version__,
                torch_threads=torch.get_num_threads()),
      date=time.strftime("%Y-%m-%d %H:%M:%S"), results=results)
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
      json.dump(record, f, indent=1)
    print("Wrote", _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
