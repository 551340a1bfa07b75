"""5G NR LDPC, CRC and QAM against Sionna 2.2 (test-only oracle), and the
repetition and finite-blocklength checks Sionna cannot make (rates < 1/5).

Sionna's LLRs are `log p(1) / p(0)`, ours `log p(0) / p(1)`: compared with a
sign flip. BLER comparisons decode the same channel outputs with both
decoders (same code, algorithm, iterations, clipping) and require our block
error rate to lie in the 95% Wilson interval of Sionna's.
"""

import math

import numpy as np
import pytest

sionna_mapping = pytest.importorskip("sionna.phy.mapping")
import torch  # pylint: disable=g-import-not-at-top
from sionna.phy.fec import crc as sionna_crc  # pylint: disable=g-import-not-at-top
from sionna.phy.fec.ldpc import LDPC5GDecoder  # pylint: disable=g-import-not-at-top
from sionna.phy.fec.ldpc import LDPC5GEncoder  # pylint: disable=g-import-not-at-top

from gjscc_jax.digital import basegraph
from gjscc_jax.digital import crc
from gjscc_jax.digital import fbl
from gjscc_jax.digital import ldpc_decode
from gjscc_jax.digital import ldpc_encode
from gjscc_jax.digital import qam
from gjscc_jax.digital import rate_matching
from gjscc_jax.digital import segmentation

_SIONNA_CN = {"sum-product": "boxplus-phi", "min-sum": "minsum",
              "offset-min-sum": "offset-minsum"}


def _wilson(errors, n, z=1.96):
  p = errors / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return centre - half, centre + half


def _bits(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 2, shape)


# --- Tables, lifting, encoder, rate matching ---------------------------------


@pytest.mark.parametrize("bg", [1, 2])
def test_base_graph_tables_equal_sionnas_copy(bg):
  encoder = LDPC5GEncoder(100, 300)
  for i_ls in range(8):
    theirs = encoder._load_basegraph(i_ls, f"bg{bg}")  # pylint: disable=protected-access
    np.testing.assert_array_equal(basegraph.matrix(bg, i_ls), theirs)


@pytest.mark.parametrize("k,n,bg,qm", [
    (12, 60, 2, None),      # smallest K, rate 1/5, fillers
    (57, 150, 2, 2),        # fillers, interleaved for QPSK
    (100, 300, 2, None),
    (500, 900, 1, 4),       # base graph 1, 16-QAM interleaver
    (1000, 1800, 1, 6),     # 64-QAM interleaver
])
def test_encoder_and_rate_matching_bit_identical_to_sionna(k, n, bg, qm):
  encoder = LDPC5GEncoder(k, n, num_bits_per_symbol=qm, bg=f"bg{bg}")
  code = basegraph.make_code(k, bg)
  assert (code.z, code.i_ls) == (encoder.z, encoder._i_ls)  # pylint: disable=protected-access
  assert code.fillers == encoder.k_filler
  u = _bits((4, k), seed=k)
  ours_full = np.asarray(ldpc_encode.encode(code, u))
  assert not np.any(np.asarray(ldpc_encode.syndrome(code, ours_full)))
  ours = np.asarray(rate_matching.rate_match(code, ours_full, n, qm or 1))
  theirs = encoder(torch.tensor(u, dtype=torch.float32)).numpy()
  np.testing.assert_array_equal(ours, theirs)


def test_repetition_below_the_mother_rate_repeats_the_circular_buffer():
  # Sionna refuses rates < 1/5; its output of the whole buffer (rate 1/3
  # for base graph 1 without fillers) must be what our longer outputs
  # repeat cyclically.
  k = 176
  code = basegraph.make_code(k, 1)
  buffer = code.n_cb - code.fillers
  encoder = LDPC5GEncoder(k, buffer, bg="bg1")
  u = _bits((3, k), seed=1)
  theirs = encoder(torch.tensor(u, dtype=torch.float32)).numpy()
  full = ldpc_encode.encode(code, u)
  for e in (buffer + 7, 3 * buffer, 5 * buffer + 11):
    ours = np.asarray(rate_matching.rate_match(code, full, e, 1))
    np.testing.assert_array_equal(
        ours, np.tile(theirs, (1, e // buffer + 1))[:, :e])


# --- CRC, segmentation ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["24A", "24B", "16"])
def test_crc_equals_sionnas(kind):
  u = _bits((5, 203), seed=3)
  theirs = sionna_crc.CRCEncoder(f"CRC{kind}")(
      torch.tensor(u, dtype=torch.float32)).numpy()
  np.testing.assert_array_equal(crc.attach(u, kind), theirs)
  assert crc.check(theirs, kind).all()
  theirs[0, 17] = 1 - theirs[0, 17]
  assert list(crc.check(theirs, kind)) == [False, True, True, True, True]


@pytest.mark.parametrize("coded,qm,rate", [(2048, 2, 0.19), (6144, 6, 0.9),
                                           (30000, 6, 0.9), (900, 2, 0.03)])
def test_transport_block_fits_the_mcs_and_round_trips(coded, qm, rate):
  a = segmentation.max_payload(coded, qm, rate)
  plan = segmentation.plan(a, coded, qm, rate)
  assert plan.info_bits <= math.floor(rate * coded)
  assert sum(plan.e) == coded and all(e % qm == 0 for e in plan.e)
  assert plan.code.k <= basegraph.MAX_BLOCK[plan.code.bg]
  payload = _bits((2, a), seed=4)
  blocks = segmentation.segment(plan, payload)
  assert blocks.shape == (2, plan.num_blocks, plan.code.k)
  decoded, ok = segmentation.desegment(plan, blocks)
  assert ok.all() and np.array_equal(decoded, payload)
  blocks[1, -1, 3] ^= 1
  assert list(segmentation.desegment(plan, blocks)[1]) == [True, False]
  # One more payload bit would not fit.
  bigger = segmentation._layout(a + 1, rate)  # pylint: disable=protected-access
  assert bigger[1] * bigger[2] > math.floor(rate * coded) or (
      segmentation.max_payload(coded, qm, rate) == a)


# --- QAM -----------------------------------------------------------------------


@pytest.mark.parametrize("qm", [2, 4, 6, 8])
def test_qam_points_and_llrs_equal_sionnas(qm):
  rng = np.random.default_rng(qm)
  bits = rng.integers(0, 2, (3, 40 * qm))
  theirs = sionna_mapping.Mapper("qam", qm)(
      torch.tensor(bits, dtype=torch.float32)).numpy()
  ours = np.asarray(qam.modulate(bits, qm))
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  np.testing.assert_allclose(np.mean(np.abs(qam.constellation(qm)) ** 2), 1.0)
  noise = rng.standard_normal(ours.shape) + 1j * rng.standard_normal(ours.shape)
  y = (theirs + 0.4 * noise).astype(np.complex64)
  n0 = rng.uniform(0.05, 1.0, y.shape).astype(np.float32)  # per symbol
  for method in qam.DEMAPPINGS:
    ref = sionna_mapping.Demapper(method, "qam", qm)(
        torch.tensor(y), torch.tensor(n0)).numpy()
    np.testing.assert_allclose(qam.demodulate(y, n0, qm, method), -ref,
                               rtol=1e-5, atol=1e-5)


def test_bpsk_is_rotated_pam():
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2, (2, 50))
  x = np.asarray(qam.modulate(bits, 1))
  np.testing.assert_allclose(x, (1 - 2 * bits) * (1 + 1j) / np.sqrt(2),
                             atol=1e-6)
  y = (x + 0.5 * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(
      x.shape))).astype(np.complex64)
  ref = sionna_mapping.Demapper("app", "pam", 1)(
      torch.tensor(y * np.exp(-1j * np.pi / 4)).to(torch.complex64),
      torch.tensor(0.5, dtype=torch.float32)).numpy()
  np.testing.assert_allclose(qam.demodulate(y, 0.5, 1), -ref, rtol=1e-5,
                             atol=1e-5)


# --- Decoder -------------------------------------------------------------------


def _awgn_llrs(code, n, frames, ebno_db, seed):
  """BPSK LLRs of rate-matched codewords at Eb/N0 (rate k/n)."""
  rng = np.random.default_rng(seed)
  u = rng.integers(0, 2, (frames, code.k))
  c = np.asarray(rate_matching.rate_match(code, ldpc_encode.encode(code, u),
                                          n, 1))
  sigma2 = 1.0 / (2 * code.k / n * 10 ** (ebno_db / 10))
  y = 1 - 2 * c + math.sqrt(sigma2) * rng.standard_normal(c.shape)
  return u, (2 * y / sigma2).astype(np.float32)


@pytest.mark.parametrize("algorithm,ebnos", [
    ("sum-product", (1.0, 2.0)), ("min-sum", (1.5, 2.5)),
    ("offset-min-sum", (1.0, 2.0))])
def test_decoder_bler_within_sionnas_interval(algorithm, ebnos):
  k, n, frames, iters = 40, 120, 300, 10
  code = basegraph.make_code(k, 2)
  decoder = LDPC5GDecoder(LDPC5GEncoder(k, n), cn_update=_SIONNA_CN[algorithm],
                          num_iter=iters, hard_out=True, return_infobits=True)
  for ebno in ebnos:
    u, llr = _awgn_llrs(code, n, frames, ebno, seed=int(ebno * 10))
    bits, _, _ = ldpc_decode.decode(
        code, rate_matching.rate_recover(code, llr, 1), e=n, num_iter=iters,
        algorithm=algorithm)
    ours = int(np.any(np.asarray(bits) != u, axis=1).sum())
    theirs = int(np.any(decoder(torch.tensor(-llr)).numpy() != u,
                        axis=1).sum())
    low, high = _wilson(theirs, frames)
    assert 5 <= theirs <= frames - 5, (algorithm, ebno, theirs)
    assert low <= ours / frames <= high, (algorithm, ebno, ours, theirs)


def test_decoder_is_deterministic_and_independent_of_the_batch():
  code = basegraph.make_code(40, 2)
  _, llr = _awgn_llrs(code, 120, 24, 1.5, seed=5)
  full = rate_matching.rate_recover(code, llr, 1)
  bits, ok, _ = ldpc_decode.decode(code, full, e=120, early_stop=False)
  again, _, _ = ldpc_decode.decode(code, full, e=120, early_stop=False)
  alone, _, _ = ldpc_decode.decode(code, full[3:4], e=120, early_stop=False)
  np.testing.assert_array_equal(bits, again)
  np.testing.assert_array_equal(bits[3:4], alone)
  # At high SNR early stopping ends well before the iteration limit.
  _, clean = _awgn_llrs(code, 120, 8, 8.0, seed=6)
  _, ok, it = ldpc_decode.decode(code, rate_matching.rate_recover(
      code, clean, 1), e=120, num_iter=20)
  assert np.all(ok) and int(np.max(it)) < 5


# --- Below rate 1/5, and the finite-blocklength approximation --------------------


def _bler(code, e, snr_db, frames, seed, qm=2):
  """BLER of QPSK over AWGN at SNR (Es/N0) with E coded bits."""
  rng = np.random.default_rng(seed)
  u = rng.integers(0, 2, (frames, code.k))
  c = rate_matching.rate_match(code, ldpc_encode.encode(code, u), e, qm)
  x = np.asarray(qam.modulate(c, qm))
  sigma2 = 10 ** (-snr_db / 10)
  y = x + math.sqrt(sigma2 / 2) * (rng.standard_normal(x.shape)
                                   + 1j * rng.standard_normal(x.shape))
  llr = qam.demodulate(y.astype(np.complex64), sigma2, qm)
  bits, _, _ = ldpc_decode.decode(
      code, rate_matching.rate_recover(code, llr, qm), e=e, num_iter=20)
  return float(np.mean(np.any(np.asarray(bits) != u, axis=1)))


def test_repetition_lowers_the_bler_and_decodes_where_capacity_allows():
  k, frames = 40, 200
  code = basegraph.make_code(k, 2)
  buffer = code.n_cb - code.fillers  # 320 bits: rate 1/8, no repetition
  snr = -7.0  # capacity needs -7.6 dB for 0.25 bit per QPSK symbol
  blers = [_bler(code, e, snr, frames, seed=e)
           for e in (buffer, 2 * buffer, 4 * buffer)]
  assert blers[0] > 0.3 and blers[0] > blers[1] > blers[2], blers
  # Rate 40 / 1600 bits over 800 QPSK symbols = 0.05 bit per use: capacity
  # needs -14.6 dB; 6 dB above it every block decodes.
  e = 1600
  needed = 10 * math.log10(2 ** (k / (e / 2)) - 1)
  assert _bler(code, e, needed + 6.0, frames, seed=9) == 0.0


def test_measured_bler_lies_right_of_the_normal_approximation():
  k, e, frames = 100, 400, 300  # rate 1/4 over 200 QPSK symbols
  code = basegraph.make_code(k, 2)
  for snr in (-3.0, -2.0, -1.0, 0.0):
    measured = _bler(code, e, snr, frames, seed=int(10 * snr) + 50)
    bound = float(fbl.error_probability(k, e // 2, snr))
    _, high = _wilson(measured * frames, frames)
    assert high >= bound, (snr, measured, bound)
  # The code needs more SNR than the approximation at BLER 0.1.
  assert _bler(code, e, fbl.snr_for(k, e // 2, 0.1), frames, seed=7) > 0.1
