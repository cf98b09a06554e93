"""StyleGAN2 losses: non-saturating logistic loss, lazy R1 on D, lazy path-length regularisation on G,
style-mixing regularisation. Follows StyleGAN2-ADA's StyleGAN2Loss phase by phase."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganserve.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator


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
    ) -> None:
        self.G, self.D = G, D
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
                ws2 = self.G.mapping(torch.randn_like(z), c)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws, noise_mode="random", fused=False)
        return img, ws

    def g_main(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        img, _ = self.run_G(z, c, update_emas=True)
        return F.softplus(-self.D(img, c)).mean()  # -log(sigmoid(D(G(z))))

    def g_pl(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """Path-length penalty: |J_w^T y| should stay constant, y an image-space random direction."""
        n = max(z.shape[0] // self.pl_batch_shrink, 1)
        img, ws = self.run_G(z[:n], c[:n] if c is not None else None)
        pl_noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.pl_decay)
        penalty = (lengths - self.pl_mean).square()
        return (penalty * self.pl_weight).mean() + img[:, 0, 0, 0].mean() * 0

    def d_main(self, z: torch.Tensor, c_fake, real: torch.Tensor, c_real) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            fake, _ = self.run_G(z, c_fake)
        loss_fake = F.softplus(self.D(fake, c_fake)).mean()
        loss_real = F.softplus(-self.D(real, c_real)).mean()
        return loss_fake, loss_real

    def d_r1(self, real: torch.Tensor, c_real) -> torch.Tensor:
        """R1: gradient penalty on real images, gamma/2 * |grad D(x)|^2."""
        real = real.detach().requires_grad_(True)
        logits = self.D(real, c_real)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return (grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)).mean() + logits.mean() * 0
