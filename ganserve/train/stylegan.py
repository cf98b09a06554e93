"""StyleGAN (v1) training: ProGAN's progressive growing (``ganserve.train.progan.GrowingTraining``) with either of
the paper's two losses, style-mixing regularisation over the layers grown so far, Adam (0, 0.99) at lr 0.001, D first.

- ``--loss logistic`` (default), the official FFHQ setup: non-saturating logistic loss with R1 on the reals every
  step (``D_logistic_simplegp``). R1's gamma defaults to StyleGAN2-ADA's heuristic 0.0002 * R^2 / batch (0.0064 at
  32 px, batch 32); the official v1 value, 10, is for 1024 px faces.
- ``--loss wgan-gp``, the official CelebA-HQ setup (the paper, section 2 and appendix C): ProGAN's WGAN-GP with the
  drift term (``ganserve.train.progan.wgan_gp_d_loss``), G minimising -D(G(z)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganserve.train.progan import GrowingTraining, WGANGPOptions, fade_reals, wgan_gp_d_loss
from ganserve.train.step import Batch, option, sample_z

LOSSES = ("logistic", "wgan-gp")


@dataclass
class StyleGANOptions(WGANGPOptions):
    loss: str = option("logistic", "logistic (non-saturating + R1, FFHQ) or wgan-gp (with drift, CelebA-HQ)")
    lr: float = option(0.001, "Adam learning rate of G and D")
    betas: tuple[float, float] = option((0.0, 0.99), "Adam betas B1,B2")
    r1_gamma: float | None = option(None, "R1 weight (default: 0.0002 * res^2 / batch)", flag="--gamma")
    style_mixing_prob: float = option(0.9, "style-mixing regularisation probability", flag="--style-mixing")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        super().check(batch_size, resolution, conditional)
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.lr > 0 or (self.r1_gamma is not None and self.r1_gamma < 0):
            raise ValueError("--lr must be > 0 and --gamma >= 0")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError("--style-mixing must be in [0, 1]")


class StyleGANTraining(GrowingTraining):
    Options = StyleGANOptions

    def __init__(self, G, D, options: StyleGANOptions, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        self.opt_G = torch.optim.Adam(G.parameters(), lr=options.lr, betas=options.betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=options.lr, betas=options.betas, eps=1e-8)
        g = options.r1_gamma
        self.r1_gamma = g if g is not None else 0.0002 * resolution**2 / batch_size

    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, lod: float, update_emas: bool = False) -> torch.Tensor:
        ws = self.G.mapping(z, c, update_emas=update_emas)
        num_ws = ws.shape[1]
        # Style mixing over the layers in use at this lod (the official cur_layers): from a random layer on, the
        # ws of a second latent.
        layers = num_ws - 2 * int(lod)
        if self.options.style_mixing_prob > 0 and layers > 1:
            cutoff = int(torch.randint(1, layers, []))
            if float(torch.rand([])) >= self.options.style_mixing_prob:
                cutoff = layers
            if cutoff < layers:
                ws2 = self.G.mapping(torch.randn_like(z), c)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return self.G.synthesis(ws, noise_mode="random")

    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        n = self.batch_size
        lod = self.grow(step)
        real, c_real, c_fake = batches()
        real = fade_reals(real, lod)
        z_dim = self.G.config.z_dim
        logs = self.progress_logs(lod)

        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = self.run_G(sample_z(n, z_dim), c_fake, lod)
        if self.options.loss == "wgan-gp":
            loss_D, d_logs = wgan_gp_d_loss(self.D, real, fake, c_real, c_fake, self.options)
            logs.update(d_logs)
        else:  # logistic, R1 on the reals
            loss_fake = F.softplus(self.D(fake, c_fake)).mean()
            real = real.detach().requires_grad_(self.r1_gamma > 0)
            d_real = self.D(real, c_real)
            loss_D = loss_fake + F.softplus(-d_real).mean()
            if self.r1_gamma > 0:
                (grads,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
                r1 = grads.square().sum([1, 2, 3]).mean() * (self.r1_gamma / 2)
                loss_D = loss_D + r1
                logs["r1"] = float(r1.detach())
            logs["D"] = float(loss_D.detach())
        loss_D.backward()
        self.opt_D.step()

        # G: non-saturating logistic loss, or -D(G(z)) under WGAN-GP.
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        d_fake = self.D(self.run_G(sample_z(n, z_dim), c_fake, lod, update_emas=True), c_fake)
        loss_G = -d_fake.mean() if self.options.loss == "wgan-gp" else F.softplus(-d_fake).mean()
        loss_G.backward()
        self.opt_G.step()
        return {"G": float(loss_G.detach()), **logs}
