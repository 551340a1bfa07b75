"""Platform-specific kernel choices, fenced off from the models.

Every function here computes a textbook operation (a convolution, a
max-pool, an activation) with its textbook values and gradients; only the
form XLA compiles differs, chosen for XLA:CPU where its default form is
slow, or for an accelerator where a measured form is faster. Models and
losses call these functions and never choose a kernel themselves.
Each choice names the benchmark in `benchmarks/` that justifies it.

* `conv2d`: stride-1 convolutions (Winograd and Eigen routes on CPU, custom
  input gradients), DeepJSCC's strided convolutions, LPIPS's small maps.
* `winograd`: Winograd F(4x4, 3x3), the CPU route of 3x3 convolutions.
* `interleave`: k x k phase maps into one image (Winograd tiles, StyleGAN2's
  upsampling phases, the max-pool gradient).
* `upsample_conv`: StyleGAN2's stride-2 transposed convolution + FIR (one
  transposed convolution on GPU and TPU, phase convolutions on CPU).
* `pooling`: 2x2 max-pool with a compare-and-select gradient.
* `elementwise`: activations and tap sums in the forms XLA fuses.
"""
