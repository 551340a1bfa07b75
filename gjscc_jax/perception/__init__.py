"""Distribution metrics: the FID Inception-v3, FID and KID (DISTS, also a
loss, is `gjscc_jax.losses.dists`)."""
