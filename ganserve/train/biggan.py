"""BigGAN training: hinge loss, Adam for G and D with their own learning rates, several D steps per G step,
orthogonal regularisation of G, and standing batch-norm statistics for the EMA generator.

``HingeTraining`` is shared with SAGAN (``ganserve.train.sagan``), which uses it with TTUR settings and one D step.

Phases of one step (BigGAN-PyTorch's order): ``d_steps`` times {fresh real batch, fakes from G without gradient,
hinge loss on D}, then one G step (-D(G(z, c), c) + ortho). G and D run in training mode throughout, so G's batch
norms use batch statistics and every spectral norm does one power iteration per forward. Before the EMA generator is
sampled or exported, ``finalize`` measures its standing statistics (Brock et al. 2019, appendix C): for each of the
config's n_stats truncation values t, the average batch-norm statistics over ``standing_batches`` batches of
z = t * TN(-2, 2) and uniformly drawn classes, from a generator seeded by the run's seed (deterministic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.layers import collect_statistics, orthogonal_regularization
from ganserve.train.step import Batch, StepOptions, TrainingStep, option, sample_z

TRUNCATION_THRESHOLD = 2.0  # z = psi * TN(-2, 2): pytorch-pretrained-BigGAN's truncated_noise_sample


def truncated_normal(shape: list[int], threshold: float, gen: torch.Generator) -> torch.Tensor:
    """N(0, 1) samples with every value outside [-threshold, threshold] redrawn until it lands inside."""
    z = torch.randn(shape, generator=gen)
    outside = z.abs() > threshold
    while bool(outside.any()):
        z[outside] = torch.randn(int(outside.sum()), generator=gen)
        outside = z.abs() > threshold
    return z


@torch.no_grad()
def standing_statistics(G: nn.Module, *, batches: int, batch_size: int, seed: int, truncated: bool = True) -> None:
    """Fill every ConditionalBatchNorm's running_means / running_vars [n_stats, C] of ``G``.

    Slot k holds the statistics at truncation t = k / (n_stats - 1) (t = 1 when n_stats is 1): z = t * TN(-2, 2) when
    ``truncated`` (BigGAN), else z ~ N(0, I) (SAGAN). The same base latents and classes serve every t, so the
    statistics vary smoothly with t. G's spectral norms are left as they are (no power iteration).
    """
    cfg = G.config
    n_stats = cfg.n_stats
    gen = torch.Generator().manual_seed(seed)
    base = []
    for _ in range(batches):
        z = truncated_normal([batch_size, cfg.z_dim], TRUNCATION_THRESHOLD, gen) if truncated else \
            torch.randn([batch_size, cfg.z_dim], generator=gen)  # fmt: skip
        base.append((z, torch.randint(0, cfg.c_dim, [batch_size], generator=gen)))
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    try:
        for k in range(n_stats):
            t = k / (n_stats - 1) if n_stats > 1 else 1.0
            with collect_statistics(G, k):
                for z, c in base:
                    G((z * t if truncated else z).to(device), c.to(device))
    finally:
        G.train(was_training)


@dataclass
class HingeOptions(StepOptions):
    g_lr: float = option(2e-4, "Adam learning rate of G")
    d_lr: float = option(2e-4, "Adam learning rate of D")
    betas: tuple[float, float] = option((0.0, 0.999), "Adam betas B1,B2 (G and D)")
    d_steps: int = option(2, "D steps per G step (each on a fresh batch)")
    ortho: float = option(1e-4, "orthogonal regularisation weight on G (BigGAN's off-diagonal form; 0: off)")
    standing_batches: int = option(8, "batches per truncation value for the EMA generator's standing statistics")
    standing_batch_size: int = option(64, "batch size of the standing-statistics passes")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        if not conditional:
            raise ValueError("this family is class-conditional: train it with --cond on labelled data")
        if batch_size < 2:
            raise ValueError(f"--batch must be at least 2 (batch norm), got {batch_size}")
        if self.d_steps < 1 or self.standing_batches < 1 or self.standing_batch_size < 2:
            raise ValueError("d_steps and standing_batches must be >= 1, standing_batch_size >= 2")
        if not (self.g_lr > 0 and self.d_lr > 0 and self.ortho >= 0):
            raise ValueError("learning rates must be positive and the ortho weight non-negative")


class HingeTraining(TrainingStep):
    """Hinge-loss GAN with spectral norm (SAGAN, BigGAN): ``d_steps`` D steps then one G step per loop step."""

    Options = HingeOptions
    truncated_standing_statistics = True  # BigGAN: statistics per truncation value

    def __init__(self, G, D, options: HingeOptions, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        o = options
        self.opt_G = torch.optim.Adam(G.parameters(), lr=o.g_lr, betas=o.betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=o.d_lr, betas=o.betas, eps=1e-8)

    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        o, n = self.options, self.batch_size
        z_dim = self.G.config.z_dim
        logs: dict[str, float] = {}

        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        for _ in range(o.d_steps):
            real, c_real, c_fake = batches()
            with torch.no_grad():
                fake = self.G(sample_z(n, z_dim), c_fake)
            self.opt_D.zero_grad(set_to_none=True)
            loss_real = F.relu(1 - self.D(real, c_real)).mean()
            loss_fake = F.relu(1 + self.D(fake, c_fake)).mean()
            (loss_real + loss_fake).backward()
            self.opt_D.step()
        logs["D_real"], logs["D_fake"] = float(loss_real.detach()), float(loss_fake.detach())

        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        c_fake = batches().c_fake
        self.opt_G.zero_grad(set_to_none=True)
        loss = -self.D(self.G(sample_z(n, z_dim), c_fake), c_fake).mean()
        logs["G"] = float(loss.detach())
        if o.ortho > 0:
            ortho = orthogonal_regularization(self.G.g_params(), o.ortho)
            loss = loss + ortho
            logs["ortho"] = float(ortho.detach())
        loss.backward()
        self.opt_G.step()
        return logs

    def finalize(self, G_ema: nn.Module) -> None:
        o = self.options
        standing_statistics(G_ema, batches=o.standing_batches, batch_size=o.standing_batch_size, seed=12345,
                            truncated=self.truncated_standing_statistics)  # fmt: skip


class BigGANTraining(HingeTraining):
    pass
