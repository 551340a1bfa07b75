"""Perceptual and distribution metrics: DISTS, the FID Inception-v3, FID and KID."""
