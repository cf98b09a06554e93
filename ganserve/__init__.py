"""ganserve: sampling and serving for GAN generators.

import ganserve
G = ganserve.load("stylegan2-fashion-32")     # a generator in eval mode
result = G.sample(seeds="0-7", truncation_psi=0.7)   # or ganserve.sample(G, seeds="0-7", truncation_psi=0.7)
"""

from __future__ import annotations

from ganserve.loading import available_models, load, save_generator
from ganserve.sampling import sample

__all__ = ["available_models", "load", "sample", "save_generator"]
__version__ = "0.1.0"
