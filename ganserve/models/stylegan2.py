"""StyleGAN2 (Karras et al., 2020): mapping network, modulated synthesis with a skip toRGB path, residual D.

Read top to bottom: config, mapping, synthesis layers and blocks, generator, discriminator. Parameter names follow
the layout of NVlabs' stylegan2-ada-pytorch (``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.weight`` ...) so that
an importer can map official checkpoints one to one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.config import MAX_CHANNELS, ModelConfig, check_power_of_two
from ganserve.models.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStd,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")


@dataclass
class StyleGAN2Config(ModelConfig):
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
    conv_clamp: float | None = 256.0
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    # Discriminator
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    cmap_dim: int = 0  # projection-discriminator embedding size (0: same as the last D channels)
    # Mixed-precision inference: the top N resolutions run in half precision (StyleGAN2-ADA's num_fp16_res)
    num_fp16_res: int = 4

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution)
        self.check_ranges({
            "img_channels": (1, 4), "z_dim": (1, MAX_CHANNELS), "w_dim": (1, MAX_CHANNELS), "c_dim": (0, 1 << 20),
            "mapping_layers": (1, 64), "mapping_lr_multiplier": (0.0, 1e3), "w_avg_beta": (0.0, 1.0),
            "channel_base": (1, 1 << 24), "channel_max": (1, MAX_CHANNELS), "conv_clamp": (0.0, 1e9),
            "mbstd_group_size": (1, 1 << 10), "mbstd_num_channels": (1, 64), "cmap_dim": (0, MAX_CHANNELS),
            "num_fp16_res": (0, 16),
        })  # fmt: skip
        if self.class_names and len(self.class_names) != self.c_dim:
            raise ValueError(f"class_names has {len(self.class_names)} names for c_dim={self.c_dim}")
        taps = self.resample_filter = tuple(self.resample_filter)
        if not 1 <= len(taps) <= 16 or not all(isinstance(t, (int, float)) for t in taps):
            raise ValueError(f"resample_filter must be 1-16 numbers, got {list(self.resample_filter)!r}")

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]


# ---------------------------------------------------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z (and optional class) -> w, with a running average of w for the truncation trick."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if c_dim:
            self.embed = EqualizedLinear(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = EqualizedLinear(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def embed_input(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.z_dim:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim:
            if c is None:
                raise ValueError("this model is class-conditional: a class is required")
            onehot = F.one_hot(c.long(), self.c_dim).to(torch.float32) if c.ndim == 1 else c.to(torch.float32)
            parts.append(normalize_2nd_moment(self.embed(onehot)))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float | torch.Tensor = 1.0,
        truncation_cutoff: int | torch.Tensor | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        x = self.embed_input(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    def truncate(
        self,
        ws: torch.Tensor,
        psi: float | torch.Tensor = 1.0,
        cutoff: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Lerp ws towards w_avg by psi on the first ``cutoff`` layers (all layers when cutoff is None)."""
        if isinstance(psi, (int, float)) and psi == 1:
            return ws
        truncated = self.w_avg.to(ws.dtype).lerp(ws, psi)
        if cutoff is None:
            return truncated
        layer = torch.arange(ws.shape[1], device=ws.device).reshape(1, -1, 1)
        return torch.where(layer < cutoff, truncated, ws)


# ---------------------------------------------------------------------------------------------------------------------
# Synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise input with learned strength, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: int = 1,
        conv_clamp: float | None = None,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        noise: torch.Tensor | None = None,
        fused: bool = False,
        gain: float = 1.0,
    ) -> torch.Tensor:
        styles = self.affine(w)
        if noise_mode == "random":
            if noise is None:
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
            noise = noise * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        else:
            noise = None
        return modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=1,
            resample_filter=self.resample_filter,
            demodulate=True,
            fused=fused,
            bias=self.bias,
            activation="lrelu",
            act_gain=math.sqrt(2) * gain,
            clamp=self.conv_clamp * gain if self.conv_clamp is not None else None,
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(
            x, self.weight, styles, demodulate=False, fused=fused, bias=self.bias, clamp=self.conv_clamp
        )


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0), conv1, and toRGB added to the upsampled image of the block below."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None,
        resample_filter: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=2,
                conv_clamp=conv_clamp,
                resample_filter=resample_filter,
            )
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str,
        noise: list[torch.Tensor | None],
        fused: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise_mode, noise[0], fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, noise[0], fused)
            x = self.conv1(x, ws[:, 1], noise_mode, noise[1], fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, self.num_conv], fused)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.resolution, self.img_channels = config.resolution, config.img_channels
        self.block_resolutions = config.block_resolutions
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = config.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(
                in_ch,
                config.channels(res),
                config.w_dim,
                res,
                config.img_channels,
                config.conv_clamp,
                config.resample_filter,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last toRGB
        # Mixed precision: blocks at and above this resolution run in ``half_dtype`` when it is set.
        log2 = int(math.log2(config.resolution))
        self.fp16_resolution = max(2 ** (log2 + 1 - config.num_fp16_res), 8) if config.num_fp16_res else None
        self.half_dtype: torch.dtype | None = None

    def noise_shapes(self) -> list[tuple[int, int]]:
        """The (H, W) of every noise input, in the order ``forward`` consumes them."""
        shapes = []
        for res in self.block_resolutions:
            shapes += [(res, res)] * getattr(self, f"b{res}").num_conv
        return shapes

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor] | None = None,
        fused: bool | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, C, H, W] in about [-1, 1].

        noise: per-layer tensors [N, 1, H, W] for noise_mode="random" (drawn from the global RNG when omitted).
        fused: grouped-conv modulation; by default only for batch 1 outside export (the activation-scaling form keeps
        the batch dimension dynamic).
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if fused is None:
            fused = ws.shape[0] == 1 and not _exporting()
        x = img = None
        w_idx = layer_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws[:, w_idx : w_idx + block.num_conv + 1]
            block_noise = (noise or [])[layer_idx : layer_idx + block.num_conv]
            block_noise = list(block_noise) + [None] * (block.num_conv - len(block_noise))
            half = self.half_dtype is not None and self.fp16_resolution is not None and res >= self.fp16_resolution
            scope = torch.autocast(ws.device.type, dtype=self.half_dtype) if half else contextlib.nullcontext()
            with scope:
                x, img = block(x, img, block_ws, noise_mode, block_noise, fused)
            img = img.float()  # the image accumulates in fp32, as the official skip generator does
            w_idx += block.num_conv
            layer_idx += block.num_conv
        return img


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


# ---------------------------------------------------------------------------------------------------------------------
# Generator


class StyleGAN2Generator(nn.Module):
    family = "stylegan2"

    def __init__(self, config: StyleGAN2Config) -> None:
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

    @contextlib.contextmanager
    def mixed_precision(self, dtype: torch.dtype = torch.float16) -> Iterator[None]:
        """Within this context the top ``config.num_fp16_res`` resolutions run in ``dtype`` (activations stay
        clamped by ``conv_clamp``); the mapping, the lower resolutions and the image sum stay fp32."""
        previous, self.synthesis.half_dtype = self.synthesis.half_dtype, dtype
        try:
            yield
        finally:
            self.synthesis.half_dtype = previous


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator (residual)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int, conv_clamp) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = EqualizedConv2d(img_channels, tmp_channels, 1, conv_clamp=conv_clamp)
        self.conv0 = EqualizedConv2d(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualizedConv2d(tmp_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        self.skip = EqualizedConv2d(tmp_channels, out_channels, 1, bias=False, activation=None, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels: int, cmap_dim: int, config: StyleGAN2Config) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStd(config.mbstd_group_size, config.mbstd_num_channels)
        self.conv = EqualizedConv2d(channels + config.mbstd_num_channels, channels, 3, conv_clamp=config.conv_clamp)
        self.fc = EqualizedLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualizedLinear(channels, cmap_dim if cmap_dim else 1)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1)))
        if cmap is not None:
            # Projection discriminator: score = <features, class embedding> / sqrt(dim).
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.config = config
        resolutions = config.block_resolutions[::-1][:-1]  # R ... 8
        for res in resolutions:
            in_ch = config.channels(res) if res < config.resolution else 0
            block = DiscriminatorBlock(
                in_ch, config.channels(res), config.channels(res // 2), config.img_channels, config.conv_clamp
            )
            setattr(self, f"b{res}", block)
        self.block_resolutions = resolutions
        cmap_dim = 0
        if config.c_dim:
            cmap_dim = config.cmap_dim or config.channels(4)
            self.mapping = MappingNetwork(0, config.c_dim, cmap_dim, None, num_layers=2, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(config.channels(4), cmap_dim, config)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.config.c_dim else None
        return self.b4(x, cmap)
