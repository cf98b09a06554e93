"""StyleGAN (Karras et al., 2019): a mapping network, a learned constant input, AdaIN styles and per-layer noise,
grown progressively like ProGAN.

Read top to bottom: config, style layer, synthesis network, generator, discriminator.

- Mapping: StyleGAN2's ``MappingNetwork`` (ganserve.models.stylegan2), which is StyleGAN's: pixel-normed z, 8
  equalized-lr dense layers at lr x 0.01, w broadcast to one w per style layer, a running average of w for the
  truncation trick.
- Synthesis: 4x4 starts from a learned constant (ones); each style layer is [2x nearest up-sampling, 3x3 conv, blur
  [1, 2, 1]], + noise with a learned per-channel strength, bias, leaky ReLU, then AdaIN (instance norm, then each
  channel scaled by 1 + y_s and shifted by y_b, an affine map of that layer's w). Two style layers per resolution, so
  2 log2(R) - 2 ws (8 at 32 px: coarse 0-3 is 4^2-8^2, middle 4-7 is 16^2-32^2). toRGB is a plain 1x1 conv per
  resolution; the image fades in through them exactly as ProGAN's (``ganserve.models.progan.Progressive``: the
  ``lod`` buffer, nearest up-sampling of the previous toRGB).
- Discriminator: ProGAN's critic with a blur [1, 2, 1] before each down-sampling convolution (the official D_basic;
  the official applies bias and activation after the down-sampling, ours before it, ProGAN's order).

Progressive growing is kept, as in the paper: at the low resolutions a step costs a fraction of a full-resolution one,
so more images are shown in the same CPU time, and it is the same mechanism (and tests) as ProGAN's.

Names follow the official release (NVlabs/stylegan, networks_stylegan.py G_synthesis) in the StyleGAN2-ADA pytorch
spelling used across ganserve (there is no official pytorch StyleGAN v1; rosinality's style-based-gan-pytorch nests
its layers differently and keeps ``weight_orig`` hooks, so the official TF names are the ones mapped):

    G_mapping/DenseK -> mapping.fcK           dlatent_avg -> mapping.w_avg
    G_synthesis/4x4/Const/const -> synthesis.b4.const.const      4x4/Conv -> synthesis.b4.conv
    G_synthesis/RxR/Conv0_up -> synthesis.bR.conv0               RxR/Conv1 -> synthesis.bR.conv1
        .../weight -> .weight   .../Noise/weight -> .noise_strength   .../bias -> .bias
        .../StyleMod/weight|bias -> .adain.affine.weight|bias          noiseK -> the layer's .noise_const
    G_synthesis/ToRGB_lodK -> synthesis.b{R >> K}.torgb          G_synthesis/lod -> synthesis.lod
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ganserve.models.config import MAX_CHANNELS, ModelConfig, check_power_of_two
from ganserve.models.layers import AdaIN, EqualizedConv2d, bias_act, blur2d, conv2d, setup_filter, upscale2d
from ganserve.models.progan import ProGANDiscriminator, Progressive, check_class_names
from ganserve.models.stylegan2 import MappingNetwork

NOISE_MODES = ("const", "random", "none")


@dataclass
class StyleGANConfig(ModelConfig):
    resolution: int = 32
    img_channels: int = 3
    z_dim: int = 128
    w_dim: int = 128
    c_dim: int = 0  # number of classes; 0 = unconditional
    class_names: list[str] = field(default_factory=list)
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 1024  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 128
    blur_filter: tuple[float, ...] = (1, 2, 1)  # () for none
    # Discriminator
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution)
        self.check_ranges({
            "img_channels": (1, 4), "z_dim": (1, MAX_CHANNELS), "w_dim": (1, MAX_CHANNELS), "c_dim": (0, 1 << 16),
            "mapping_layers": (1, 64), "mapping_lr_multiplier": (0.0, 1e3), "w_avg_beta": (0.0, 1.0),
            "channel_base": (1, 1 << 24), "channel_max": (1, MAX_CHANNELS), "mbstd_group_size": (1, 1 << 10),
            "mbstd_num_channels": (1, 64),
        })  # fmt: skip
        check_class_names(self)
        taps = self.blur_filter = tuple(self.blur_filter)
        numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in taps)
        if len(taps) > 15 or (taps and len(taps) % 2 == 0) or not numbers:
            raise ValueError(f"blur_filter must be an odd number (at most 15) of taps or empty, got {list(taps)!r}")

    def channels(self, res: int) -> int:
        return max(min(self.channel_base // res, self.channel_max), 1)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]


# ---------------------------------------------------------------------------------------------------------------------
# Synthesis network


class StyleLayer(nn.Module):
    """One style layer: [2x up, 3x3 conv, blur] (or the learned constant when ``in_channels`` is 0), noise with a
    per-channel strength, bias, leaky ReLU, AdaIN from w."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool = False,
        blur_filter: tuple[float, ...] = (1, 2, 1),
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        if in_channels == 0:
            self.const = nn.Parameter(torch.ones(out_channels, resolution, resolution))
        else:
            self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
            self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.adain = AdaIN(w_dim, out_channels)
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.blur = up and bool(blur_filter)
        if self.blur:
            self.register_buffer("blur_filter", setup_filter(blur_filter), persistent=False)

    def forward(
        self, x: torch.Tensor | None, w: torch.Tensor, noise_mode: str = "const", noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.const.to(w.dtype).unsqueeze(0).repeat(w.shape[0], 1, 1, 1)
        else:
            if self.up:
                x = upscale2d(x)
            x = conv2d(x, self.weight.to(x.dtype) * self.weight_gain, padding=1)
            if self.blur:
                x = blur2d(x, self.blur_filter)
        if noise_mode == "random":
            if noise is None:
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
        elif noise_mode == "const":
            noise = self.noise_const
        else:
            noise = None
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype).reshape(1, -1, 1, 1)
        x = bias_act(x, self.bias.to(x.dtype), "lrelu")
        return self.adain(x, w)


class SynthesisBlock(nn.Module):
    """One resolution: two style layers (4x4: the constant and a conv; above: an up-sampling conv and a conv) and its
    toRGB."""

    num_conv = 2

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 blur_filter: tuple[float, ...]) -> None:  # fmt: skip
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = StyleLayer(0, out_channels, w_dim, resolution)
            self.conv = StyleLayer(out_channels, out_channels, w_dim, resolution)
        else:
            self.conv0 = StyleLayer(in_channels, out_channels, w_dim, resolution, up=True, blur_filter=blur_filter)
            self.conv1 = StyleLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = EqualizedConv2d(out_channels, img_channels, 1, activation=None)

    def layers(self) -> tuple[StyleLayer, StyleLayer]:
        return (self.const, self.conv) if self.resolution == 4 else (self.conv0, self.conv1)

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                noise: list[torch.Tensor | None]) -> torch.Tensor:  # fmt: skip
        for k, layer in enumerate(self.layers()):
            x = layer(x, ws[:, k], noise_mode, noise[k])
        return x


class SynthesisNetwork(Progressive):
    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.resolution, self.img_channels = config.resolution, config.img_channels
        self.block_resolutions = config.block_resolutions
        for res in self.block_resolutions:
            block = SynthesisBlock(config.channels(res // 2) if res > 4 else 0, config.channels(res), config.w_dim,
                                   res, config.img_channels, config.blur_filter)  # fmt: skip
            setattr(self, f"b{res}", block)
        self.num_ws = 2 * len(self.block_resolutions)
        self._init_progress(config.resolution)

    def noise_shapes(self) -> list[tuple[int, int]]:
        """The (H, W) of every noise input, in the order ``forward`` consumes them (all resolutions, grown or not)."""
        return [(res, res) for res in self.block_resolutions for _ in range(2)]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor] | None = None,
        fused: bool | None = None,  # StyleGAN2's signature; AdaIN has no fused form
        resolution: int | None = None,
        alpha: float | None = None,
        full_size: bool = True,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R] in about [-1, 1].

        noise: per-layer tensors [N, 1, H, W] for noise_mode="random" (drawn from the global RNG when omitted).
        resolution / alpha: how far grown (default: the stored lod); layers above it are not run.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        top, alpha = self.resolve_progress(resolution, alpha)
        noise = list(noise or [])
        noise += [None] * (self.num_ws - len(noise))
        x = previous = None
        for i, res in enumerate(self.block_resolutions):
            if res > top:
                break
            if res == top and alpha < 1:
                previous = upscale2d(getattr(self, f"b{res // 2}").torgb(x))
            x = getattr(self, f"b{res}")(x, ws[:, 2 * i : 2 * i + 2], noise_mode, noise[2 * i : 2 * i + 2])
        img = getattr(self, f"b{top}").torgb(x)
        if previous is not None:
            img = torch.lerp(previous, img, alpha)
        if full_size:
            img = upscale2d(img, self.resolution // top)
        return img


# ---------------------------------------------------------------------------------------------------------------------
# Generator


class StyleGANGenerator(nn.Module):
    family = "stylegan"

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            config.z_dim,
            config.c_dim,
            config.w_dim,
            self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )

    # How far grown: the synthesis network's lod (the official G_synthesis/lod).
    def set_lod(self, lod: float) -> None:
        self.synthesis.set_lod(lod)

    def set_progress(self, resolution: int, alpha: float = 1.0) -> None:
        self.synthesis.set_progress(resolution, alpha)

    @property
    def progress(self) -> tuple[int, float]:
        return self.synthesis.progress

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        update_emas: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator


class StyleGANDiscriminator(ProGANDiscriminator):
    """ProGAN's critic; the config's ``blur_filter`` adds StyleGAN's blur before each down-sampling convolution."""
