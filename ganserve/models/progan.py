"""ProGAN (Karras et al., 2018): a pixel-normed, equalized-lr generator and a minibatch-stddev critic, grown
progressively from 4x4 to the final resolution with a smooth fade-in of each new resolution.

Read top to bottom: config, how far a network has grown (``lod``), generator, discriminator.

Both networks hold every resolution from the start (every layer stays trainable); a buffer ``lod`` (level of detail,
as the official networks keep it: 0 = the final resolution, log2(R) - 2 = 4x4) says how far they have grown. A
fractional lod k + f means resolution R / 2^k is fading in with alpha = 1 - f: the generator blends the 2x nearest
up-sampled image of the previous toRGB with the new toRGB, the critic blends the new fromRGB path with the fromRGB of
the 2x box-down-sampled image. Images always go in and out at the final resolution (a lower-resolution image
nearest-up-sampled), as in the official code, so the training loop never sees the growth. The lod travels with the
state dict, so a training state resumes mid-fade and a checkpoint written mid-growth samples what it had learned;
a shipped checkpoint has grown to the end (lod 0).

Names follow the official release (tkarras/progressive_growing_of_gans, networks.py G_paper / D_paper) in the
StyleGAN2-ADA pytorch spelling used across ganserve:

    G  4x4/Dense -> b4.dense      4x4/Conv -> b4.conv    RxR/Conv0 -> bR.conv0    RxR/Conv1 -> bR.conv1
       ToRGB_lodK -> b{R_final >> K}.torgb               lod -> lod
    D  FromRGB_lodK -> b{R_final >> K}.fromrgb           RxR/Conv0 -> bR.conv0    RxR/Conv1 -> bR.conv1
       4x4/Conv -> b4.conv        4x4/Dense0 -> b4.fc    4x4/Dense1 -> b4.out     lod -> lod

The equalized-lr layers are ganserve's (``layers.EqualizedConv2d``): the official ones scale the weight by
sqrt(2) / sqrt(fan_in) before a plain leaky ReLU, ours by 1 / sqrt(fan_in) with the activation multiplied by sqrt(2):
the same function, with the bias stored divided by sqrt(2). Class-conditional models (c_dim > 0) concatenate a one-hot
class to the latent (as the official G) and score each class separately in D, picking the given one (StyleGAN v1's
D_basic; the official ProGAN used an AC-GAN head instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.config import MAX_CHANNELS, ModelConfig, check_power_of_two
from ganserve.models.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStd,
    bias_act,
    blur2d,
    downscale2d,
    linear,
    normalize_2nd_moment,
    setup_filter,
    upscale2d,
)


@dataclass
class ProGANConfig(ModelConfig):
    resolution: int = 32
    img_channels: int = 3
    z_dim: int = 128
    c_dim: int = 0  # number of classes; 0 = unconditional
    class_names: list[str] = field(default_factory=list)
    channel_base: int = 1024  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 128
    normalize_latents: bool = True  # pixel norm of the latent (and one-hot class) before the first layer
    pixel_norm: bool = True  # pixel norm after every generator convolution
    # Discriminator
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution)
        self.check_ranges({
            "img_channels": (1, 4), "z_dim": (1, MAX_CHANNELS), "c_dim": (0, 1 << 16), "channel_base": (1, 1 << 24),
            "channel_max": (1, MAX_CHANNELS), "mbstd_group_size": (1, 1 << 10), "mbstd_num_channels": (1, 64),
        })  # fmt: skip
        check_flags(self, "normalize_latents", "pixel_norm")
        check_class_names(self)

    def channels(self, res: int) -> int:
        return max(min(self.channel_base // res, self.channel_max), 1)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]


def check_flags(config: ModelConfig, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(config, name)!r}")


def check_class_names(config: ModelConfig) -> None:
    names = config.class_names
    if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 256 for n in names):
        raise ValueError("class_names must be a list of strings")
    if names and len(names) != config.c_dim:
        raise ValueError(f"class_names has {len(names)} names for c_dim={config.c_dim}")


# ---------------------------------------------------------------------------------------------------------------------
# How far a network has grown: lod <-> (resolution, alpha)


def lod_of(resolution: int, alpha: float, final_resolution: int) -> float:
    """The level of detail at which ``resolution`` has faded in by ``alpha`` (0: just started, 1: complete)."""
    check_progress(resolution, alpha, final_resolution)
    return math.log2(final_resolution) - math.log2(resolution) + (1.0 - alpha)


def progress_of(lod: float, final_resolution: int) -> tuple[int, float]:
    """lod -> (the highest resolution computed, its alpha). lod k + f: resolution R / 2^k with alpha 1 - f."""
    k = math.floor(lod)
    return final_resolution >> k, 1.0 - (lod - k)


def check_progress(resolution: int, alpha: float, final_resolution: int) -> None:
    check_power_of_two("resolution", resolution, 4, final_resolution)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if resolution == 4 and alpha != 1.0:
        raise ValueError("4x4 is the first resolution: it has nothing to fade from (alpha must be 1)")


class Progressive(nn.Module):
    """A network that grows: a ``lod`` buffer and the (resolution, alpha) it stands for."""

    def _init_progress(self, final_resolution: int) -> None:
        self.final_resolution = final_resolution
        self.register_buffer("lod", torch.zeros([]))

    @property
    def max_lod(self) -> int:
        return int(math.log2(self.final_resolution)) - 2

    def set_lod(self, lod: float) -> None:
        if not 0.0 <= lod <= self.max_lod:
            raise ValueError(f"lod must be in [0, {self.max_lod}], got {lod!r}")
        with torch.no_grad():
            self.lod.fill_(lod)

    def set_progress(self, resolution: int, alpha: float = 1.0) -> None:
        self.set_lod(lod_of(resolution, alpha, self.final_resolution))

    @property
    def progress(self) -> tuple[int, float]:
        """(highest resolution computed, its fade-in alpha) at the stored lod."""
        return progress_of(float(self.lod), self.final_resolution)

    def resolve_progress(self, resolution: int | None, alpha: float | None) -> tuple[int, float]:
        """Explicit (resolution, alpha) (export passes them, so the graph never reads the buffer), else the lod's."""
        if resolution is None:
            if alpha is not None:
                raise ValueError("alpha needs a resolution")
            return self.progress
        alpha = 1.0 if alpha is None else float(alpha)
        check_progress(resolution, alpha, self.final_resolution)
        return resolution, alpha


# ---------------------------------------------------------------------------------------------------------------------
# Generator


class FeatureMapDense(nn.Module):
    """latent -> [N, C, 4, 4]: an equalized-lr dense layer reshaped to feature maps, per-channel bias, leaky ReLU."""

    def __init__(self, in_features: int, channels: int, size: int = 4) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        self.weight = nn.Parameter(torch.randn(channels * size * size, in_features))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = linear(x, self.weight.to(x.dtype) * self.weight_gain)
        x = x.reshape(-1, self.channels, self.size, self.size)
        return bias_act(x, self.bias.to(x.dtype), "lrelu")


class GeneratorInput(nn.Module):
    """4x4: dense from the latent, 3x3 conv (each followed by pixel norm), and the 4x4 toRGB."""

    def __init__(self, in_features: int, channels: int, img_channels: int, pixel_norm: bool) -> None:
        super().__init__()
        self.pixel_norm = pixel_norm
        self.dense = FeatureMapDense(in_features, channels)
        self.conv = EqualizedConv2d(channels, channels, 3)
        self.torgb = EqualizedConv2d(channels, img_channels, 1, activation=None)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_2nd_moment(x) if self.pixel_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.norm(self.dense(x))))


class GeneratorBlock(nn.Module):
    """One doubling: 2x nearest up-sampling, two 3x3 convs (each followed by pixel norm), and this resolution's
    toRGB."""

    def __init__(self, in_channels: int, out_channels: int, img_channels: int, pixel_norm: bool) -> None:
        super().__init__()
        self.pixel_norm = pixel_norm
        self.conv0 = EqualizedConv2d(in_channels, out_channels, 3)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3)
        self.torgb = EqualizedConv2d(out_channels, img_channels, 1, activation=None)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_2nd_moment(x) if self.pixel_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv0(upscale2d(x)))
        return self.norm(self.conv1(x))


class ProGANGenerator(Progressive):
    family = "progan"

    def __init__(self, config: ProGANConfig) -> None:
        super().__init__()
        self.config = config
        self.block_resolutions = config.block_resolutions
        self.b4 = GeneratorInput(config.z_dim + config.c_dim, config.channels(4), config.img_channels,
                                 config.pixel_norm)  # fmt: skip
        for res in self.block_resolutions[1:]:
            block = GeneratorBlock(config.channels(res // 2), config.channels(res), config.img_channels,
                                   config.pixel_norm)  # fmt: skip
            setattr(self, f"b{res}", block)
        self._init_progress(config.resolution)

    def embed(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = z.to(torch.float32)
        if self.config.c_dim:
            if c is None:
                raise ValueError("this model is class-conditional: a class is required")
            onehot = F.one_hot(c.long(), self.config.c_dim).to(x.dtype) if c.ndim == 1 else c.to(x.dtype)
            x = torch.cat([x, onehot], dim=1)
        return normalize_2nd_moment(x) if self.config.normalize_latents else x

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        resolution: int | None = None,
        alpha: float | None = None,
        full_size: bool = True,
    ) -> torch.Tensor:
        """z [N, z_dim] (, classes [N]) -> images [N, C, R, R] in about [-1, 1].

        resolution / alpha: how far grown (default: the stored lod). full_size=False returns the image at
        ``resolution`` instead of nearest-up-sampled to the final size.
        """
        top, alpha = self.resolve_progress(resolution, alpha)
        x = self.b4(self.embed(z, c))
        previous = None
        for res in self.block_resolutions[1:]:
            if res > top:
                break
            if res == top and alpha < 1:
                previous = upscale2d(getattr(self, f"b{res // 2}").torgb(x))
            x = getattr(self, f"b{res}")(x)
        img = getattr(self, f"b{top}").torgb(x)
        if previous is not None:
            img = torch.lerp(previous, img, alpha)  # exact at both ends: alpha 0 is ``previous``, 1 is the new image
        if full_size:
            img = upscale2d(img, self.final_resolution // top)
        return img


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator (also StyleGAN v1's, with a blur before each down-sampling convolution)


class DiscriminatorBlock(nn.Module):
    """One halving: this resolution's fromRGB, two 3x3 convs (optionally a blur before the second), 2x box
    down-sampling."""

    def __init__(self, channels: int, out_channels: int, img_channels: int, blur_filter: tuple[float, ...]) -> None:
        super().__init__()
        self.fromrgb = EqualizedConv2d(img_channels, channels, 1)
        self.conv0 = EqualizedConv2d(channels, channels, 3)
        self.conv1 = EqualizedConv2d(channels, out_channels, 3)
        self.blur = bool(blur_filter)
        if self.blur:
            self.register_buffer("blur_filter", setup_filter(blur_filter), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        if self.blur:
            x = blur2d(x, self.blur_filter)
        return downscale2d(self.conv1(x))


class DiscriminatorEpilogue(nn.Module):
    """4x4: fromRGB, minibatch stddev, 3x3 conv, dense, dense to one score (per class when conditional)."""

    def __init__(self, channels: int, img_channels: int, outputs: int, mbstd_group_size: int,
                 mbstd_num_channels: int) -> None:  # fmt: skip
        super().__init__()
        self.fromrgb = EqualizedConv2d(img_channels, channels, 1)
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels)
        self.conv = EqualizedConv2d(channels + mbstd_num_channels, channels, 3)
        self.fc = EqualizedLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualizedLinear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))


class ProGANDiscriminator(Progressive):
    """The critic. Built from the generator's config; a config with ``blur_filter`` (StyleGAN v1) blurs before each
    down-sampling convolution."""

    def __init__(self, config: ProGANConfig) -> None:
        super().__init__()
        self.config = config
        self.c_dim = int(config.c_dim)
        blur = tuple(getattr(config, "blur_filter", ()) or ())
        self.block_resolutions = config.block_resolutions[::-1][:-1]  # R ... 8
        for res in self.block_resolutions:
            block = DiscriminatorBlock(config.channels(res), config.channels(res // 2), config.img_channels, blur)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(config.channels(4), config.img_channels, max(self.c_dim, 1),
                                        config.mbstd_group_size, config.mbstd_num_channels)  # fmt: skip
        self._init_progress(config.resolution)

    def forward(
        self,
        img: torch.Tensor,
        c: torch.Tensor | None = None,
        resolution: int | None = None,
        alpha: float | None = None,
    ) -> torch.Tensor:
        """images [N, C, S, S] (S >= the current resolution; box-down-sampled to it) -> scores [N, 1]."""
        top, alpha = self.resolve_progress(resolution, alpha)
        if img.shape[-1] > top:
            img = downscale2d(img, img.shape[-1] // top)
        x = getattr(self, f"b{top}").fromrgb(img)
        for res in [r for r in self.block_resolutions if r <= top]:
            x = getattr(self, f"b{res}")(x)
            if res == top and alpha < 1:
                previous = getattr(self, f"b{res // 2}").fromrgb(downscale2d(img))
                x = torch.lerp(previous, x, alpha)
        x = self.b4(x)
        if self.c_dim:
            if c is None:
                raise ValueError("this model is class-conditional: a class is required")
            onehot = F.one_hot(c.long(), self.c_dim).to(x.dtype) if c.ndim == 1 else c.to(x.dtype)
            x = (x * onehot).sum(dim=1, keepdim=True)
        return x
