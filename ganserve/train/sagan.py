"""SAGAN training: BigGAN's hinge step (``ganserve.train.biggan.HingeTraining``) with SAGAN's settings: TTUR
(D at 4e-4, G at 1e-4, one D step per G step), Adam betas (0, 0.9), no orthogonal regularisation, and plain batch-norm
statistics (z ~ N(0, I), one slot) measured for the EMA generator before it is sampled or exported."""

from __future__ import annotations

from dataclasses import dataclass

from ganserve.train.biggan import HingeOptions, HingeTraining
from ganserve.train.step import option


@dataclass
class SAGANOptions(HingeOptions):
    g_lr: float = option(1e-4, "Adam learning rate of G (TTUR)")
    d_lr: float = option(4e-4, "Adam learning rate of D (TTUR)")
    betas: tuple[float, float] = option((0.0, 0.9), "Adam betas B1,B2 (G and D)")
    d_steps: int = option(1, "D steps per G step (each on a fresh batch)")
    ortho: float = option(0.0, "orthogonal regularisation weight on G (0: off, as in SAGAN)")


class SAGANTraining(HingeTraining):
    Options = SAGANOptions
    truncated_standing_statistics = False
