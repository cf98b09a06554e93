"""Adaptive discriminator augmentation (Karras et al., "Training GANs with Limited Data", 2020).

Every image the discriminator sees — real and generated, in the G and D phases and under R1 — goes through the same
random, differentiable augmentations, each applied with probability p: horizontal flip, integer translation (up to
1/8 of the image, reflected at the border), brightness, contrast, saturation (colour images) and cutout (a square of
half the image size). Because they leak no distribution change at p < ~0.8, G cannot learn them. ADA adapts p from
the overfitting heuristic r_t = E[sign(D(real))]: every ``interval`` steps p moves by
sign(r_t - target) * (images seen in the interval) / (ada_kimg * 1000), toward the target 0.6.

The random draws are for the global batch and sharded (``ganserve.train.distributed``), so data-parallel runs
augment exactly as one process does.
"""

from __future__ import annotations

import math

import torch

from ganserve.train.distributed import all_mean, rank_world, shard


def _global_rand(n: int, *shape: int) -> torch.Tensor:
    return shard(torch.rand(n * rank_world()[1], *shape))


def _global_randn(n: int, *shape: int) -> torch.Tensor:
    return shard(torch.randn(n * rank_world()[1], *shape))


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Indices mirrored back into [0, size) (border pixel not repeated, as reflect padding)."""
    period = 2 * (size - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= size, period - idx, idx)


class AugmentPipe:
    """The ADA pipeline's differentiable subset; ``p`` is the probability of each augmentation per image."""

    def __init__(self, p: float = 0.0, translate: float = 0.125, brightness_std: float = 0.2,
                 contrast_std: float = 0.5, saturation_std: float = 1.0, cutout_size: float = 0.5) -> None:  # fmt: skip
        self.p = p
        self.translate, self.brightness_std, self.contrast_std = translate, brightness_std, contrast_std
        self.saturation_std, self.cutout_size = saturation_std, cutout_size

    def _apply(self, n: int) -> torch.Tensor:
        """Which of ``n`` images an augmentation touches this time: [n, 1, 1, 1] of 0/1."""
        return (_global_rand(n) < self.p).to(torch.float32).reshape(n, 1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return x
        n, c, h, w = x.shape
        dev = x.device
        # Every augmentation draws for every image in a fixed order: the random stream depends only on the step.
        flip = self._apply(n).to(dev)
        x = flip * x.flip(3) + (1 - flip) * x
        # integer translation with reflection
        on = self._apply(n).to(dev).reshape(n)
        shift = (_global_rand(n, 2) * 2 - 1).to(dev) * self.translate
        tx = torch.round(shift[:, 0] * w * on).long()
        ty = torch.round(shift[:, 1] * h * on).long()
        rows = _reflect(torch.arange(h, device=dev)[None] - ty[:, None], h)  # [n, h]
        cols = _reflect(torch.arange(w, device=dev)[None] - tx[:, None], w)  # [n, w]
        x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
        x = x.gather(3, cols[:, None, None, :].expand(n, c, h, w))
        # colour
        b = self._apply(n).to(dev) * _global_randn(n).reshape(n, 1, 1, 1).to(dev) * self.brightness_std
        x = x + b
        on = self._apply(n).to(dev)
        contrast = torch.exp2(_global_randn(n).reshape(n, 1, 1, 1).to(dev) * self.contrast_std)
        mean = x.mean(dim=[1, 2, 3], keepdim=True)
        x = (x - mean) * (on * contrast + (1 - on)) + mean
        on = self._apply(n).to(dev)
        sat = torch.exp2(_global_randn(n).reshape(n, 1, 1, 1).to(dev) * self.saturation_std)
        if c == 3:  # saturation scales the distance from the grey axis
            grey = x.mean(dim=1, keepdim=True)
            x = (x - grey) * (on * sat + (1 - on)) + grey
        # cutout
        on = self._apply(n).to(dev)
        centre = _global_rand(n, 2).to(dev)
        yy = (torch.arange(h, device=dev).reshape(1, h, 1) + 0.5) / h
        xx = (torch.arange(w, device=dev).reshape(1, 1, w) + 0.5) / w
        inside = ((xx - centre[:, 0, None, None]).abs() < self.cutout_size / 2) & (
            (yy - centre[:, 1, None, None]).abs() < self.cutout_size / 2
        )
        keep = 1 - on * inside[:, None].to(x.dtype)
        return x * keep


class AdaController:
    """Adjusts the pipe's p toward the target overfitting heuristic r_t = E[sign(D(real))]."""

    def __init__(self, pipe: AugmentPipe, *, target: float = 0.6, interval: int = 4, ada_kimg: float = 500,
                 batch_size: int = 32) -> None:  # fmt: skip
        self.pipe, self.target, self.interval, self.ada_kimg = pipe, target, interval, ada_kimg
        self.batch_size = batch_size
        self.sign_sum = torch.zeros([], dtype=torch.float64)
        self.count = torch.zeros([], dtype=torch.float64)
        self.rt = float("nan")

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add this step's real logits; summed over every rank, so each rank holds the same totals."""
        world = rank_world()[1]
        local = torch.stack([real_logits.detach().sign().sum(), torch.tensor(float(real_logits.numel()))]).double()
        total = all_mean(local.to(real_logits.device)).cpu() * world
        self.sign_sum, self.count = self.sign_sum + total[0], self.count + total[1]

    def update(self, step: int) -> None:
        """Every ``interval`` steps: p += sign(r_t - target) * images / (ada_kimg * 1000), p >= 0."""
        if (step + 1) % self.interval or float(self.count) == 0:
            return
        self.rt = float(self.sign_sum / self.count)
        adjust = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
        self.pipe.p = max(self.pipe.p + adjust * self.batch_size * self.interval / (self.ada_kimg * 1000), 0.0)
        self.sign_sum, self.count = torch.zeros([], dtype=torch.float64), torch.zeros([], dtype=torch.float64)

    def state(self) -> dict[str, torch.Tensor]:
        return {"ada.p": torch.tensor(self.pipe.p, dtype=torch.float64), "ada.sign_sum": self.sign_sum.clone(),
                "ada.count": self.count.clone()}  # fmt: skip

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.pipe.p = float(tensors["ada.p"])
        self.sign_sum, self.count = tensors["ada.sign_sum"].clone(), tensors["ada.count"].clone()
