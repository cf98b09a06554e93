"""Training steps for the VQ families (VQ-GAN, ViT-VQGAN): two stages, run one after the other with the shared loop.

``--stage first``: the autoencoder. Loss (taming-transformers' VQLPIPSWithDiscriminator): L1 + ``perceptual_weight``
x a perceptual distance + ``codebook_weight`` x the quantiser loss + an adaptive weight x the hinge generator loss,
the adaptive weight being |grad nll| / |grad g_loss| at the decoder's last layer (times ``disc_weight``, clamped to
[0, 1e4]), with the discriminator (PatchGAN, hinge loss) switched on at step ``disc_start``. Adam (0.5, 0.9) for both.
Unlike taming, the discriminator sees real and reconstructed images in one batch (its batch norm statistics shared):
with separate batches our small D never got past logits of 0 on Fashion-MNIST and the GAN term was noise.
Dead codes are restarted every ``restart_every`` steps onto recent encoder outputs.

The perceptual distance: no pretrained VGG / LPIPS weights can be downloaded here, so it is LPIPS' recipe (unit-
normalise each layer's activations over channels, squared differences summed over channels, averaged over pixels,
summed over layers; no learned per-channel weights) on the convolutional stages of a small classifier trained on
the same data (``ganserve.eval.classifier``, ``--perceptual PATH``).

``--stage prior``: the GPT over the codes of a trained first stage (``--first-stage CHECKPOINT``, loaded and frozen);
each batch is encoded on the fly; cross entropy of the next code given the class token and the codes before it;
AdamW (0.9, 0.95), weight decay on matrices only, linear warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.train.step import Batch, StepOptions, TrainingStep, option

STAGES = ("first", "prior")


@dataclass
class VQOptions(StepOptions):
    stage: str = option("first", "first (autoencoder + discriminator) or prior (the GPT over a first stage's codes)")
    first_stage: str | None = option(None, "prior stage: the checkpoint whose first stage is encoded (frozen)")
    lr: float = option(2e-4, "first stage: Adam learning rate of the autoencoder and the discriminator")
    warmup: int = option(0, "first stage: linear learning-rate warm-up steps of the autoencoder (transformers like it)")
    disc_start: int = option(3000, "first stage: step at which the discriminator and its loss start")
    disc_weight: float = option(0.8, "first stage: factor on the adaptive discriminator weight")
    perceptual_weight: float = option(1.0, "first stage: weight of the perceptual distance (0: L1 only)")
    perceptual: str | None = option("checkpoints/classifier-fashion-32.safetensors",
                                    "first stage: classifier whose features give the perceptual distance")
    codebook_weight: float = option(1.0, "first stage: weight of the quantiser loss")
    restart_every: int = option(200, "first stage: steps between dead-code restarts (0: never)")
    restart_threshold: float = option(0.03, "first stage: restart codes used less than this x the mean usage")
    restart_until: int = option(0, "first stage: last step with restarts (0: until the end)")
    prior_lr: float = option(5e-4, "prior: AdamW peak learning rate")
    prior_warmup: int = option(200, "prior: linear warm-up steps")
    prior_weight_decay: float = option(0.01, "prior: AdamW weight decay (weight matrices and embeddings)")

    def check(self, *args, **kwargs) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.stage == "prior" and not self.first_stage:
            raise ValueError("--stage prior needs --first-stage CHECKPOINT (the trained first stage)")
        for name in ("lr", "prior_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")


# ---------------------------------------------------------------------------------------------------------------------
# Losses


class PerceptualDistance(nn.Module):
    """LPIPS' distance without its learned weights, on the ReLU outputs of a classifier's convolutional body."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.net = classifier.eval().requires_grad_(False)
        body = getattr(classifier, "body", classifier)
        self.taps = [m for m in body.modules() if isinstance(m, nn.ReLU)]
        if not self.taps:
            raise ValueError("the perceptual network has no ReLU layers to take features from")

    def train(self, mode: bool = True) -> PerceptualDistance:
        super().train(mode)
        self.net.eval()  # frozen batch-norm statistics, always
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: feats.append(out)) for m in self.taps]
        try:
            body = getattr(self.net, "body", self.net)
            body(x)
        finally:
            for h in hooks:
                h.remove()
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance [N] between image batches in [-1, 1]."""
        fx, fy = self.features(torch.cat([x, y])), None
        total = x.new_zeros(x.shape[0])
        for f in fx:
            a, b = f.chunk(2)
            a = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (a - b).square().sum(1).mean(dim=(1, 2))
        del fy
        return total


def load_perceptual(path: str) -> PerceptualDistance:
    from ganserve.eval.classifier import load_classifier

    classifier, _ = load_classifier(path)
    return PerceptualDistance(classifier)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def _fake_logits(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's logits for ``fake`` in a batch shared with ``real`` (real detached): its batch norm then sees both halves,
    as in the D step; separate batches let batch norm erase the real/fake difference (the D never learned)."""
    return D(torch.cat([real.detach(), fake])).chunk(2)[1]


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """|d nll / d last| / (|d g_loss / d last| + 1e-4), clamped to [0, 1e4] and detached (taming's rule)."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


# ---------------------------------------------------------------------------------------------------------------------
# The step


def _decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and not name.endswith("pos_emb") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class VQGANTraining(TrainingStep):
    """Both stages of a VQ family (the whole model is G; D is the PatchGAN, unused in the prior stage)."""

    Options = VQOptions

    def __init__(self, G: nn.Module, D: nn.Module, options: VQOptions, *, batch_size: int, resolution: int) -> None:
        super().__init__(G, D, options, batch_size=batch_size, resolution=resolution)
        o = options
        if o.stage == "first":
            self.optimizer_names = ("opt_G", "opt_D")
            params = [p for p in G.first_stage.parameters() if p.requires_grad]
            self.opt_G = torch.optim.Adam(params, lr=o.lr, betas=(0.5, 0.9))
            self.opt_D = torch.optim.Adam(D.parameters(), lr=o.lr, betas=(0.5, 0.9))
            self.perceptual = load_perceptual(o.perceptual) if o.perceptual_weight > 0 and o.perceptual else None
            G.prior.requires_grad_(False)
        else:
            self.optimizer_names = ("opt_P",)
            self._load_first_stage(o.first_stage)
            G.first_stage.eval().requires_grad_(False)
            self.opt_P = torch.optim.AdamW(_decay_groups(G.prior, o.prior_weight_decay), lr=o.prior_lr,
                                           betas=(0.9, 0.95))  # fmt: skip

    def _load_first_stage(self, path: str) -> None:
        import ganserve

        source = ganserve.load(path)
        if source.family != self.G.family:
            raise ValueError(f"--first-stage {path} holds a {source.family} model, this run trains {self.G.family}")
        ours, theirs = self.G.first_stage.config.to_dict(), source.first_stage.config.to_dict()
        if ours != theirs:
            diff = {k: (ours.get(k), theirs.get(k)) for k in {*ours, *theirs} if ours.get(k) != theirs.get(k)}
            raise ValueError(f"--first-stage {path}: its config differs from this run's (ours, its): {diff}")
        self.G.first_stage.load_state_dict(source.first_stage.state_dict())

    def default_ema_kimg(self, batch_size: int) -> float:
        return batch_size * 10 / 32

    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        if self.options.stage == "first":
            return self._first(step, batches())
        return self._prior(step, batches())

    def _first(self, step: int, batch: Batch) -> dict[str, float]:
        o, fs, D = self.options, self.G.first_stage, self.D
        x = batch.real
        fs.train()
        xrec, qloss, _ = fs(x)
        rec = (x - xrec).abs().mean()
        nll = rec
        logs = {"rec": rec.item(), "q": qloss.item()}
        if self.perceptual is not None:
            p = self.perceptual(x, xrec).mean()
            nll = nll + o.perceptual_weight * p
            logs["p"] = p.item()
        loss = nll + o.codebook_weight * qloss
        gan = step >= o.disc_start
        if gan:
            g_loss = -_fake_logits(D, x, xrec).mean()
            d_weight = adaptive_weight(nll, g_loss, fs.last_layer()) * o.disc_weight
            loss = loss + d_weight * g_loss
            logs.update(g=g_loss.item(), d_weight=d_weight.item())
        if o.warmup:
            for group in self.opt_G.param_groups:
                group["lr"] = o.lr * min(1.0, (step + 1) / o.warmup)
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        if gan:
            real_logits, fake_logits = D(torch.cat([x, xrec.detach()])).chunk(2)
            d_loss = hinge_d_loss(real_logits, fake_logits)
            self.opt_D.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_D.step()
            logs["d"] = d_loss.item()
        q = fs.quantize
        if o.restart_every and step > 0 and step % o.restart_every == 0 and (not o.restart_until
                                                                             or step <= o.restart_until):  # fmt: skip
            logs["restarted"] = float(q.restart_dead_codes(o.restart_threshold))
        logs["used"] = float((q.usage > 0.01 * q.usage.mean()).float().mean())
        return logs

    def _prior(self, step: int, batch: Batch) -> dict[str, float]:
        o, G = self.options, self.G
        with torch.no_grad():
            codes = G.first_stage.encode_codes(batch.real).reshape(batch.real.shape[0], -1)
        G.prior.train()
        lr = o.prior_lr * min(1.0, (step + 1) / max(o.prior_warmup, 1))
        for group in self.opt_P.param_groups:
            group["lr"] = lr
        loss = G.prior.loss(codes, batch.c_real if G.prior.config.c_dim else None)
        self.opt_P.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(G.prior.parameters(), 1.0)
        self.opt_P.step()
        return {"nll": loss.item(), "lr": lr}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"quantize_usage": self.G.first_stage.quantize.usage.detach().clone()}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "quantize_usage" in tensors:
            self.G.first_stage.quantize.usage.copy_(tensors["quantize_usage"])
