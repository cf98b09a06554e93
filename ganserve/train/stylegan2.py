"""StyleGAN2 training: non-saturating logistic loss, lazy R1 on D, lazy path-length regularisation on G,
style-mixing regularisation (StyleGAN2-ADA's StyleGAN2Loss phase by phase), and the family's training step.

Adam with the lazy-regularisation correction of lr and betas; the path-length running mean is part of the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganserve.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganserve.train.augment import AdaController, AugmentPipe
from ganserve.train.distributed import all_mean, global_randn, rank_world
from ganserve.train.step import Batch, StepOptions, TrainingStep, option, sample_z


class StyleGAN2Loss:
    def __init__(
        self,
        G: StyleGAN2Generator,
        D: StyleGAN2Discriminator,
        *,
        r1_gamma: float,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        augment: AugmentPipe | None = None,
        ada: AdaController | None = None,
    ) -> None:
        self.G, self.D = G, D
        self.augment, self.ada = augment, ada
        self.r1_gamma, self.style_mixing_prob = r1_gamma, style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.pl_mean = torch.zeros([])

    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False):
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            # Style-mixing regularisation: from a random layer on, take the ws of another latent.
            num_ws = ws.shape[1]
            cutoff = int(torch.randint(1, num_ws, []))
            if float(torch.rand([])) >= self.style_mixing_prob:
                cutoff = num_ws
            if cutoff < num_ws:
                ws2 = self.G.mapping(global_randn(*z.shape), c)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        # Noise drawn for the global batch (layer by layer, as the layers would draw it) and sharded: data-parallel
        # ranks then add the noise one process would.
        noise = [global_randn(z.shape[0], 1, h, w) for h, w in self.G.synthesis.noise_shapes()]
        img = self.G.synthesis(ws, noise_mode="random", noise=noise, fused=False)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.D(self.augment(img) if self.augment is not None else img, c)

    def g_main(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        img, _ = self.run_G(z, c, update_emas=True)
        return F.softplus(-self.run_D(img, c)).mean()  # -log(sigmoid(D(G(z))))

    def g_pl(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """Path-length penalty: |J_w^T y| should stay constant, y an image-space random direction."""
        n = max(z.shape[0] // self.pl_batch_shrink, 1)
        img, ws = self.run_G(z[:n], c[:n] if c is not None else None)
        pl_noise = global_randn(*img.shape) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.lerp(all_mean(lengths.mean().detach()).cpu(), self.pl_decay)
        penalty = (lengths - self.pl_mean).square()
        return (penalty * self.pl_weight).mean() + img[:, 0, 0, 0].mean() * 0

    def d_main(self, z: torch.Tensor, c_fake, real: torch.Tensor, c_real) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            fake, _ = self.run_G(z, c_fake)
        loss_fake = F.softplus(self.run_D(fake, c_fake)).mean()
        real_logits = self.run_D(real, c_real)
        if self.ada is not None:
            self.ada.accumulate(real_logits)
        loss_real = F.softplus(-real_logits).mean()
        return loss_fake, loss_real

    def d_r1(self, real: torch.Tensor, c_real) -> torch.Tensor:
        """R1: gradient penalty on real images, gamma/2 * |grad D(x)|^2."""
        real = real.detach().requires_grad_(True)
        logits = self.run_D(real, c_real)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return (grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)).mean() + logits.mean() * 0


# ---------------------------------------------------------------------------------------------------------------------
# The training step


@dataclass
class StyleGAN2Options(StepOptions):
    lr: float = option(0.0025, "Adam learning rate of G and D (before the lazy-regularisation correction)")
    betas: tuple[float, float] = option((0.0, 0.99), "Adam betas B1,B2")
    r1_gamma: float | None = option(None, "R1 weight (default: 0.0002 * res^2 / batch)", flag="--gamma")
    pl_weight: float = option(2.0, "path-length regularisation weight (0: off)")
    pl_decay: float = option(0.01, "decay of the path-length running mean")
    style_mixing_prob: float = option(0.9, "style-mixing regularisation probability", flag="--style-mixing")
    g_reg_interval: int = option(4, "G steps between lazy path-length regularisations")
    d_reg_interval: int = option(16, "D steps between lazy R1 regularisations")
    aug: str = option("noaug", "discriminator augmentation: ada (adaptive p), fixed (--aug-p) or noaug")
    aug_p: float = option(0.0, "augmentation probability: the start of ada, the value of fixed")
    target: float = option(0.6, "ada: target of the overfitting heuristic r_t = E[sign(D(real))]")
    ada_kimg: float = option(500.0, "ada: thousands of images over which p can move from 0 to 1")
    ada_interval: int = option(4, "ada: steps between adjustments of p")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        if self.aug not in ("ada", "fixed", "noaug"):
            raise ValueError(f"--aug must be ada, fixed or noaug, got {self.aug!r}")
        if not 0 <= self.aug_p <= 1 or not 0 < self.target < 1 or self.ada_kimg <= 0 or self.ada_interval < 1:
            raise ValueError("--aug-p must be in [0, 1], --target in (0, 1), --ada-kimg > 0, --ada-interval >= 1")
        if batch_size < 1 or batch_size % 4:
            raise ValueError(f"--batch must be a positive multiple of 4 (minibatch-stddev groups), got {batch_size}")
        if self.g_reg_interval < 1 or self.d_reg_interval < 1:
            raise ValueError("the regularisation intervals must be >= 1")


def lazy_adam(module: torch.nn.Module, lr: float, betas: tuple[float, float], reg_interval: int) -> torch.optim.Adam:
    # Lazy regularisation runs the regulariser every k steps with k times the weight; scale lr and betas so the
    # optimiser's effective step matches running it every step (StyleGAN2, appendix B).
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=[b**ratio for b in betas], eps=1e-8)


class StyleGAN2Training(TrainingStep):
    """G main + lazy path length every ``g_reg_interval`` steps, then D main + lazy R1 every ``d_reg_interval``."""

    Options = StyleGAN2Options

    def __init__(self, G, D, options: StyleGAN2Options, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        o = options
        self.opt_G = lazy_adam(G, o.lr, o.betas, o.g_reg_interval)
        self.opt_D = lazy_adam(D, o.lr, o.betas, o.d_reg_interval)
        global_batch = batch_size * rank_world()[1]  # heuristics are per global batch, whatever the process count
        gamma = o.r1_gamma if o.r1_gamma is not None else 0.0002 * resolution**2 / global_batch
        augment = AugmentPipe(o.aug_p) if o.aug != "noaug" else None
        self.ada = AdaController(augment, target=o.target, interval=o.ada_interval, ada_kimg=o.ada_kimg,
                                 batch_size=global_batch) if o.aug == "ada" else None  # fmt: skip
        self.loss = StyleGAN2Loss(G, D, r1_gamma=gamma, style_mixing_prob=o.style_mixing_prob, pl_weight=o.pl_weight,
                                  pl_decay=o.pl_decay, augment=augment, ada=self.ada)  # fmt: skip

    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        o, n = self.options, self.batch_size
        real, c_real, c_fake = batches()
        z_dim = self.G.config.z_dim
        logs: dict[str, float] = {}

        # G main and (every g_reg_interval) path-length regularisation.
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        loss = self.loss.g_main(sample_z(n, z_dim), c_fake)
        loss.backward()
        self.opt_G.step()
        logs["G"] = float(loss.detach())
        if o.pl_weight > 0 and step % o.g_reg_interval == 0:
            self.opt_G.zero_grad(set_to_none=True)
            pl = self.loss.g_pl(sample_z(n, z_dim), c_fake)
            (pl * o.g_reg_interval).backward()
            self.opt_G.step()
            logs["pl"] = float(pl.detach())

        # D main and (every d_reg_interval) R1.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        loss_fake, loss_real = self.loss.d_main(sample_z(n, z_dim), c_fake, real, c_real)
        (loss_fake + loss_real).backward()
        self.opt_D.step()
        logs["D"] = float((loss_fake + loss_real).detach())
        if self.loss.r1_gamma > 0 and step % o.d_reg_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            r1 = self.loss.d_r1(real, c_real)
            (r1 * o.d_reg_interval).backward()
            self.opt_D.step()
            logs["r1"] = float(r1.detach())
        if self.ada is not None:
            self.ada.update(step)
        if self.loss.augment is not None:
            logs["p"] = self.loss.augment.p
        return logs

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"loss.pl_mean": self.loss.pl_mean.reshape([]), **(self.ada.state() if self.ada else {})}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.loss.pl_mean = tensors["loss.pl_mean"].clone()
        if self.ada is not None:
            self.ada.load(tensors)
