"""GenerativeJSCC's model: a DeepJSCC encoder and a GPEN-style StyleGAN2 decoder.

* `model`: `GenerativeJSCC` (encoder -> channel -> receiver -> synthesis) and
  `build_generative_jscc`, which builds a consistent one from plain
  arguments.
* `receiver`: `GenerativeReceiver`, the trunk that turns received symbols
  into W+ latents and per-layer feature maps.
* `synthesis`: `InjectedSynthesis`, StyleGAN2's synthesis network with the
  maps injected, and `graft_synthesis` for converted official weights.
"""

from gjscc_jax.models.generative.model import build_generative_jscc
from gjscc_jax.models.generative.model import GenerativeJSCC
from gjscc_jax.models.generative.model import straight_through_clip
from gjscc_jax.models.generative.receiver import GenerativeReceiver
from gjscc_jax.models.generative.synthesis import graft_synthesis
from gjscc_jax.models.generative.synthesis import InjectedSynthesis
from gjscc_jax.models.generative.synthesis import is_injection_scale

__all__ = [
    "GenerativeJSCC", "GenerativeReceiver", "InjectedSynthesis",
    "build_generative_jscc", "graft_synthesis", "is_injection_scale",
    "straight_through_clip",
]
