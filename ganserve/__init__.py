"""ganserve: sampling and serving for GAN generators.

import ganserve
G = ganserve.load("stylegan2-fashion-32")     # a generator in eval mode
result = G.sample(seeds="0-7", truncation_psi=0.7)   # or ganserve.sample(G, seeds="0-7", truncation_psi=0.7)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganserve.loading import available_models, load, save_generator
    from ganserve.sampling import sample

__all__ = ["available_models", "load", "sample", "save_generator"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: the CLI must set OpenMP's environment before torch loads
    # (ganserve/cli.py), and `import ganserve.cli` runs this file first.
    if name in ("available_models", "load", "save_generator"):
        from ganserve import loading

        return getattr(loading, name)
    if name == "sample":
        from ganserve.sampling import sample

        return sample
    raise AttributeError(f"module 'ganserve' has no attribute {name!r}")
