"""ProGAN training: progressive growing on the shared loop, WGAN-GP with the drift term (the paper's loss).

Growing (shared with StyleGAN v1, ``ganserve.train.stylegan``): the official ``TrainingSchedule``. Starting at
``start_resolution``, each resolution trains for ``phase_kimg`` thousand images, then the next one fades in over
``fade_kimg`` (alpha 0 -> 1), until the final resolution, which trains for the rest of the run. The schedule maps
images shown (step x batch) to a level of detail (lod: 0 = final resolution, a fraction = a fade), so a step's
resolution and alpha are a function of the step: nothing in the loop changes. Each step sets the lod on G and D
(their ``lod`` buffers; the loop copies G's to the EMA generator with the other buffers), fades the real images like
the generator's output (the official ``process_reals``: box-down-sampled to the current resolution, blended with a
2x coarser copy by 1 - alpha, nearest-up-sampled back), and, as the official code does, resets the Adam moments when
a fade starts and when it ends. Images stay at the final resolution throughout (the networks down-/up-sample
internally), as in the official code, so the gradient penalty is taken on the same images.

The training state records the lod (in the G, D and G_ema tensors) and, explicitly, ``progress.resolution`` and
``progress.alpha`` of the last step; a resumed run checks them against the schedule and continues bit-exactly,
mid-fade included (tested).

Loss: WGAN-GP (Gulrajani et al.) with ProGAN's drift term: D minimises D(fake) - D(real) + lambda (|grad D(x_hat)| -
target)^2 / target^2 + epsilon D(real)^2, x_hat a per-sample random mix of real and fake; G minimises -D(G(z)).
Adam (0, 0.99), lr 0.001, one D step per G step, D first (the official defaults; lambda 10, target 1, epsilon 0.001).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ganserve.models.config import check_power_of_two
from ganserve.models.layers import downscale2d, upscale2d
from ganserve.models.progan import progress_of
from ganserve.train.step import Batch, StepOptions, TrainingStep, option, sample_z


@dataclass
class GrowthOptions(StepOptions):
    start_resolution: int = option(4, "resolution the growing starts at")
    phase_kimg: float = option(16.0, "thousands of images each resolution trains before the next fades in")
    fade_kimg: float = option(16.0, "thousands of images each new resolution takes to fade in (alpha 0 -> 1)")
    reset_optimizers: bool = option(True, "reset the Adam moments when a fade starts and when it ends (official)")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        check_power_of_two("--start-resolution", self.start_resolution, 4, resolution)
        if not (self.phase_kimg >= 0 and self.fade_kimg >= 0 and math.isfinite(self.phase_kimg + self.fade_kimg)):
            raise ValueError("--phase-kimg and --fade-kimg must be finite and >= 0")
        if self.start_resolution < resolution and self.phase_kimg + self.fade_kimg <= 0:
            raise ValueError("growing needs --phase-kimg + --fade-kimg > 0 (or --start-resolution at the final one)")


class GrowthSchedule:
    """Images shown -> lod, as the official ``TrainingSchedule`` (lod_training_kimg, lod_transition_kimg)."""

    def __init__(self, options: GrowthOptions, resolution: int) -> None:
        self.start_lod = int(math.log2(resolution)) - int(math.log2(options.start_resolution))
        self.phase_img = round(options.phase_kimg * 1000)
        self.fade_img = round(options.fade_kimg * 1000)
        self.resolution = resolution

    def lod(self, nimg: int) -> float:
        duration = self.phase_img + self.fade_img
        phase = nimg // duration if duration > 0 else 0
        lod = float(self.start_lod - phase)
        if self.fade_img > 0:
            lod -= max(nimg - phase * duration - self.phase_img, 0) / self.fade_img
        return max(lod, 0.0)

    def progress(self, nimg: int) -> tuple[int, float]:
        return progress_of(self.lod(nimg), self.resolution)


def fade_reals(real: torch.Tensor, lod: float) -> torch.Tensor:
    """Real images as the generator shows them at ``lod`` (official process_reals): at resolution R / 2^floor(lod),
    blended with their 2x coarser version by the fractional part, nearest-up-sampled back to R."""
    k = math.floor(lod)
    x = downscale2d(real, 2**k)
    if lod > k:
        x = torch.lerp(x, upscale2d(downscale2d(x)), lod - k)
    return upscale2d(x, 2**k)


class GrowingTraining(TrainingStep):
    """What both progressive families share: set the lod each step, reset the optimisers at phase edges, record the
    progress in the state. Subclasses build ``opt_G`` / ``opt_D`` and implement ``step_losses``."""

    Options = GrowthOptions

    def __init__(self, G: nn.Module, D: nn.Module, options: GrowthOptions, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        self.schedule = GrowthSchedule(options, resolution)
        self.saved_lod: float | None = None  # from a resumed state, checked against the schedule on the first step

    def lod_at(self, step: int) -> float:
        """The lod of ``step`` as the networks store it (float32)."""
        return float(torch.tensor(self.schedule.lod(step * self.batch_size), dtype=torch.float32))

    def grow(self, step: int) -> float:
        lod = self.lod_at(step)
        if self.saved_lod is not None:
            if step > 0 and self.saved_lod != self.lod_at(step - 1):
                expected = self.lod_at(step - 1)
                raise ValueError(f"the saved run was at lod {self.saved_lod} after step {step - 1}; this growth "
                                 f"schedule puts it at {expected}: resume with the run's own options")  # fmt: skip
            self.saved_lod = None
        if step > 0 and self.options.reset_optimizers:
            before = self.lod_at(step - 1)
            if math.floor(lod) != math.floor(before) or math.ceil(lod) != math.ceil(before):
                for name in self.optimizer_names:
                    getattr(self, name).state.clear()
        self.G.set_lod(lod)
        self.D.set_lod(lod)
        return lod

    def progress_logs(self, lod: float) -> dict[str, float]:
        resolution, alpha = progress_of(lod, self.resolution)
        return {"resolution": float(resolution), "alpha": alpha}

    def extra_state(self) -> dict[str, torch.Tensor]:
        lod = float(self.D.lod)
        resolution, alpha = progress_of(lod, self.resolution)
        return {"progress.lod": torch.tensor(lod, dtype=torch.float32),
                "progress.resolution": torch.tensor(resolution, dtype=torch.int64),
                "progress.alpha": torch.tensor(alpha, dtype=torch.float64)}  # fmt: skip

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.saved_lod = float(tensors["progress.lod"])


# ---------------------------------------------------------------------------------------------------------------------
# ProGAN


@dataclass
class WGANGPOptions(GrowthOptions):
    gp_lambda: float = option(10.0, "WGAN-GP weight lambda")
    gp_target: float = option(1.0, "WGAN-GP target gradient norm")
    drift: float = option(0.001, "drift term epsilon: keeps D(real) near 0")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        super().check(batch_size, resolution, conditional)
        if not self.gp_target > 0 or self.gp_lambda < 0 or self.drift < 0:
            raise ValueError("--gp-target must be > 0, --gp-lambda and --drift >= 0")


def wgan_gp_d_loss(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c_real, c_fake, o: WGANGPOptions
) -> tuple[torch.Tensor, dict[str, float]]:
    """D's WGAN-GP loss with the drift term: -(D(real) - D(fake)) + gradient penalty + epsilon D(real)^2."""
    d_real = D(real, c_real)
    d_fake = D(fake, c_fake)
    wasserstein = d_real.mean() - d_fake.mean()
    mix = torch.rand([real.shape[0], 1, 1, 1])
    x_hat = torch.lerp(real, fake, mix).requires_grad_(True)
    (grads,) = torch.autograd.grad(D(x_hat, c_real).sum(), x_hat, create_graph=True)
    norms = grads.flatten(1).norm(dim=1)
    gp = ((norms - o.gp_target).square() * (o.gp_lambda / o.gp_target**2)).mean()
    loss = -wasserstein + gp + d_real.square().mean() * o.drift
    return loss, {"D": float(loss.detach()), "W": float(wasserstein.detach()), "gp": float(gp.detach())}


@dataclass
class ProGANOptions(WGANGPOptions):
    lr: float = option(0.001, "Adam learning rate of G and D")
    betas: tuple[float, float] = option((0.0, 0.99), "Adam betas B1,B2")

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        super().check(batch_size, resolution, conditional)
        if not self.lr > 0:
            raise ValueError("--lr must be > 0")


class ProGANTraining(GrowingTraining):
    Options = ProGANOptions

    def __init__(self, G, D, options: ProGANOptions, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        self.opt_G = torch.optim.Adam(G.parameters(), lr=options.lr, betas=options.betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=options.lr, betas=options.betas, eps=1e-8)

    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        n = self.batch_size
        lod = self.grow(step)
        real, c_real, c_fake = batches()
        real = fade_reals(real, lod)
        z_dim = self.G.config.z_dim

        # D: Wasserstein estimate + gradient penalty + drift.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = self.G(sample_z(n, z_dim), c_fake)
        loss_D, logs = wgan_gp_d_loss(self.D, real, fake, c_real, c_fake, self.options)
        loss_D.backward()
        self.opt_D.step()

        # G: -D(G(z)).
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        loss_G = -self.D(self.G(sample_z(n, z_dim), c_fake), c_fake).mean()
        loss_G.backward()
        self.opt_G.step()
        return {"G": float(loss_G.detach()), **logs, **self.progress_logs(lod)}
