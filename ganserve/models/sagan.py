"""SAGAN (Zhang et al., 2019): a class-conditional residual generator with self-attention at one resolution,
spectral norm in G and D, conditional batch norm, and a projection discriminator; trained with the hinge loss and
TTUR (``ganserve.train.sagan``).

Read top to bottom: config, generator, attention maps, discriminator. The residual up-block (BN-ReLU-up-conv3x3-
BN-ReLU-conv3x3 with a 1x1 shortcut) and the projection discriminator are the ones BigGAN inherited from SAGAN;
they are defined once, in ``ganserve.models.biggan``, and used here as they are. What makes this SAGAN and not
BigGAN: one latent z for the whole generator (no hierarchy), no shared embedding (each batch norm's gain and bias are
linear in the one-hot class), no truncation trick, and plain (not standing-per-truncation) batch-norm statistics:
``n_stats`` = 1, measured once after training over z ~ N(0, I).

The attention map of a query pixel: the generator's attention block computes, for every position of its feature map
(``attention_resolution`` px), softmax weights over the 2x max-pooled key positions. ``attention_image`` takes the
query pixel's weights (image coordinates [y, x] scaled to the attention map), divides them by their maximum and
upsamples them (nearest) to the image size: white where the query attends most, black where it ignores. The
generator returns that image instead of the sample for the rows that ask (``attention_query`` >= 0).

Names (no public SAGAN release to follow): linear, blocks.N.{bn_0,conv_0,bn_1,conv_1,conv_sc}, attention
(snconv1x1_theta/phi/g/o_conv, gamma: pytorch-pretrained-BigGAN's SelfAttn names), bn, conv_out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.biggan import GenBlock, ProjectionDiscriminator, _check_layers
from ganserve.models.config import MAX_CHANNELS, ModelConfig, check_power_of_two
from ganserve.models.layers import ConditionalBatchNorm, SelfAttention, SNConv2d, SNLinear


@dataclass
class SAGANConfig(ModelConfig):
    resolution: int = 32
    img_channels: int = 1
    c_dim: int = 10  # number of classes
    class_names: list[str] = field(default_factory=list)
    z_dim: int = 128
    g_channels: list[int] = field(default_factory=lambda: [128, 128, 64, 32])  # at 4, 8, 16 ... resolution px
    attention_resolution: int | None = 16  # self-attention on the feature map of this size (None: none)
    n_stats: int = 1
    eps: float = 1e-4
    # Discriminator (BigGAN's projection D): [downsample, out multiplier] per block
    d_channel_width: int = 32
    d_layers: list[list] = field(default_factory=lambda: [[True, 1], [True, 2], [False, 4]])
    d_attention_layer_position: int | None = 1

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution)
        self.check_ranges({
            "img_channels": (1, 4), "c_dim": (1, 1 << 16), "z_dim": (1, MAX_CHANNELS), "n_stats": (1, 1024),
            "eps": (1e-12, 1.0), "d_channel_width": (1, MAX_CHANNELS), "d_attention_layer_position": (0, 64),
        })  # fmt: skip
        if self.class_names and len(self.class_names) != self.c_dim:
            raise ValueError(f"class_names has {len(self.class_names)} names for c_dim={self.c_dim}")
        n = int(math.log2(self.resolution)) - 1
        ch = self.g_channels
        ok = isinstance(ch, (list, tuple)) and len(ch) == n
        if not ok or any(isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CHANNELS for c in ch):
            raise ValueError(f"g_channels must be {n} channel counts (4 px to {self.resolution} px), got {ch!r}")
        self.g_channels = list(ch)
        if self.attention_resolution is not None:
            check_power_of_two("attention_resolution", self.attention_resolution, 4, self.resolution)
            c = self.g_channels[int(math.log2(self.attention_resolution)) - 2]
            if c % 8:
                raise ValueError(
                    f"self-attention needs a multiple of 8 channels, {self.attention_resolution} px has {c}"
                )
        self.d_layers = _check_layers("d_layers", self.d_layers, self.d_channel_width)
        if any(len(e) != 2 for e in self.d_layers):
            raise ValueError("d_layers entries are [downsample, out multiplier]")
        if self.d_attention_layer_position is not None and self.d_attention_layer_position > len(self.d_layers):
            raise ValueError(f"d_attention_layer_position is past the last of {len(self.d_layers)} blocks")

    @property
    def resolutions(self) -> list[int]:
        return [4 * 2**i for i in range(len(self.g_channels))]


# ---------------------------------------------------------------------------------------------------------------------
# Generator


class SAGANGenerator(nn.Module):
    """(z [N, z_dim], class ids [N] or class vectors [N, c_dim]) -> images [N, C, R, R] in [-1, 1];
    ``attention_query`` [N, 2] (y, x in image pixels; -1 for none) swaps in the attention map of that pixel."""

    family = "sagan"

    def __init__(self, config: SAGANConfig) -> None:
        super().__init__()
        self.config = c = config
        ch, eps = c.g_channels, c.eps
        self.linear = SNLinear(c.z_dim, 4 * 4 * ch[0], eps=eps)
        self.blocks = nn.ModuleList(
            GenBlock(ch[i], ch[i + 1], c.c_dim, up=True, n_stats=c.n_stats, eps=eps) for i in range(len(ch) - 1)
        )
        self.attention_index = None  # attention after this many blocks
        if c.attention_resolution is not None:
            self.attention_index = c.resolutions.index(c.attention_resolution)
            self.attention = SelfAttention(ch[self.attention_index], eps=eps)
        self.bn = ConditionalBatchNorm(ch[-1], None, n_stats=c.n_stats, eps=eps)
        self.conv_out = SNConv2d(ch[-1], c.img_channels, 3, eps=eps)

    def class_vector(self, c: torch.Tensor) -> torch.Tensor:
        if c.ndim == 1:
            return F.one_hot(c.long(), self.config.c_dim).to(torch.float32)
        return c.to(torch.float32)

    def forward(self, z: torch.Tensor, c: torch.Tensor, attention_query: torch.Tensor | None = None) -> torch.Tensor:
        cv = self.class_vector(c)
        h = self.linear(z.to(torch.float32)).reshape(-1, self.config.g_channels[0], 4, 4)
        attn = None
        for i in range(len(self.blocks) + 1):
            if i == self.attention_index:
                h, attn = self.attention(h, return_attention=True)
            if i < len(self.blocks):
                h = self.blocks[i](h, cv, None)
        img = torch.tanh(self.conv_out(F.relu(self.bn(h))))
        if attention_query is None or attn is None:
            return img
        wanted = (attention_query[:, 0] >= 0).reshape(-1, 1, 1, 1)
        return torch.where(wanted, self.attention_image(attn, attention_query), img)

    def attention_image(self, attn: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """attn [N, S*S, S*S/4] and query pixels [N, 2] (image coordinates) -> [N, C, R, R] in [-1, 1]: the query
        position's weights over the pooled keys, divided by their maximum, upsampled (nearest) to the image."""
        cfg = self.config
        n, s, r = attn.shape[0], cfg.attention_resolution, cfg.resolution
        q = query.long().clamp(min=0) * s // r  # image pixel -> attention-map position
        index = (q[:, 0] * s + q[:, 1]).reshape(n, 1, 1).expand(n, 1, attn.shape[2])
        weights = attn.gather(1, index).reshape(n, 1, s // 2, s // 2)
        weights = weights / weights.amax(dim=[2, 3], keepdim=True)
        img = F.interpolate(weights, scale_factor=float(2 * r // s), mode="nearest") * 2 - 1
        return img.expand(n, cfg.img_channels, r, r)


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator


class SAGANDiscriminator(ProjectionDiscriminator):
    """Residual blocks with self-attention and a projection head (``biggan.ProjectionDiscriminator``)."""
