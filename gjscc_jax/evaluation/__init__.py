"""Evaluation of trained schemes: metric sweeps over SNR, reports and plots."""
