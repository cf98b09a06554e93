"""BigGAN (Brock et al., 2019): class-conditional residual generator with a shared class embedding, hierarchical
latents, self-attention, spectral norm and standing batch-norm statistics; a projection discriminator.

Read top to bottom: config, generator blocks (the paper's BigGAN block, and BigGAN-deep's bottleneck block behind
``deep=True``), generator, discriminator.

The generator (hierarchical, the paper's BigGAN): z is split into ``len(layers) + 1`` equal chunks. The first goes
through ``gen_z`` to a 4x4 map; each residual up-block gets ``cat(z_chunk, embedding)`` as the conditioning vector of
its conditional batch norms, where ``embedding = embeddings(class_vector)`` is one class embedding shared by every
block. ``deep=True`` builds BigGAN-deep instead: the whole ``cat(z, embedding)`` goes to ``gen_z`` and to every block,
and the blocks are the 1x1-3x3-3x3-1x1 bottlenecks whose skip path drops channels instead of convolving.

Classes enter as a class *vector* [N, c_dim] (one-hot, or any mixture: lerping two one-hots lerps their embeddings,
which is class interpolation) or as int64 ids [N]. Truncation: z is drawn from a truncated normal and scaled
(z = psi * TN(-2, 2), pytorch-pretrained-BigGAN's convention, done by the sampler), and every batch norm reads
the standing statistics measured at that truncation (per row: ``truncation`` may be a tensor [N]).

Names. Parameters and buffers follow huggingface/pytorch-pretrained-BigGAN (the released BigGAN-deep, itself a port
of the TF-Hub modules) wherever it has the same thing, so an importer maps its state dict one to one:
    embeddings.weight                              [embed_dim, c_dim], Linear without bias on a class vector
    generator.gen_z.{weight_orig,weight_u,weight_v,bias}      spectral norm as torch.nn.utils.spectral_norm stores it
    generator.layers.N                             the blocks, with a SelfAttn module inserted at
                                                   ``attention_layer_position`` (its index in ``layers``)
    generator.layers.N.bn_K.{scale,offset}.*, .running_means, .running_vars   [n_stats, C] standing statistics
    generator.layers.N.conv_K.*                    deep blocks: conv_0..conv_3 (1x1, 3x3, 3x3, 1x1)
    generator.layers.N.snconv1x1_{theta,phi,g,o_conv}.*, .gamma               self-attention
    generator.bn.{weight,bias,running_means,running_vars}, generator.conv_to_rgb.*
    gen_z's output is laid out [N, 4, 4, C] (TF's NHWC) and permuted to NCHW, as there.
Where ours differs: the hierarchical blocks (not in that release) are named like the deep ones but hold
bn_0, conv_0 (3x3), bn_1, conv_1 (3x3) and conv_sc (the 1x1 learnable shortcut, BigGAN-PyTorch's name); the
hierarchical conv_to_rgb has ``img_channels`` outputs (the deep one keeps ``channel_width`` outputs and, as there,
the first ``img_channels`` are the image). ``embed_dim`` may differ from ``z_dim`` (the release has them equal).
Standing statistics interpolate linearly between the two nearest of the n_stats truncation values; the release
weights the two neighbours the other way round (coef on the lower one), so the two agree exactly only at the
n_stats grid points (truncation k / (n_stats - 1)). The discriminator has no public release; its names are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.config import MAX_CHANNELS, ModelConfig, check_power_of_two
from ganserve.models.layers import (
    ConditionalBatchNorm,
    SelfAttention,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    _tracing,
    linear,
    standing_statistics,
)

MAX_LAYERS = 64


def _check_layers(name: str, layers: list, width: int) -> list[list]:
    if not isinstance(layers, (list, tuple)) or not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"{name} must be a list of 1-{MAX_LAYERS} entries, got {layers!r}")
    out = []
    for entry in layers:
        if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], bool):
            raise ValueError(f"{name} entries must start with a bool, got {entry!r}")
        mults = entry[1:]
        if any(isinstance(m, bool) or not isinstance(m, int) or not 1 <= m * width <= MAX_CHANNELS for m in mults):
            raise ValueError(f"{name} entry {entry!r}: channel multipliers must give 1-{MAX_CHANNELS} channels")
        out.append(list(entry))
    return out


@dataclass
class BigGANConfig(ModelConfig):
    resolution: int = 32
    img_channels: int = 1
    c_dim: int = 10  # number of classes (BigGAN is class-conditional)
    class_names: list[str] = field(default_factory=list)
    z_dim: int = 128  # hierarchical: split into len(layers) + 1 equal chunks
    embed_dim: int = 128  # the shared class embedding
    channel_width: int = 32  # "ch": every channel count is a multiple of it
    # Generator blocks as pytorch-pretrained-BigGAN's config: [upsample, in multiplier, out multiplier]
    layers: list[list] = field(default_factory=lambda: [[True, 4, 4], [True, 4, 2], [True, 2, 1]])
    attention_layer_position: int | None = 2  # self-attention before this block (None: none)
    deep: bool = False  # BigGAN-deep bottleneck blocks, whole z to every block
    n_stats: int = 11  # standing statistics at n_stats truncations 0, 0.1 .. 1 (the release has 51)
    eps: float = 1e-4  # batch-norm and spectral-norm epsilon (the release's)
    # Discriminator: [downsample, out multiplier] per residual block; self-attention before block d_attention_...
    d_channel_width: int = 32
    d_layers: list[list] = field(default_factory=lambda: [[True, 1], [True, 2], [False, 4]])
    d_attention_layer_position: int | None = 1

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution)
        self.check_ranges({
            "img_channels": (1, 4), "c_dim": (1, 1 << 16), "z_dim": (1, MAX_CHANNELS), "embed_dim": (1, MAX_CHANNELS),
            "channel_width": (1, MAX_CHANNELS), "n_stats": (1, 1024), "eps": (1e-12, 1.0),
            "d_channel_width": (1, MAX_CHANNELS), "attention_layer_position": (0, MAX_LAYERS),
            "d_attention_layer_position": (0, MAX_LAYERS),
        })  # fmt: skip
        if not isinstance(self.deep, bool):
            raise ValueError(f"deep must be true or false, got {self.deep!r}")
        if self.class_names and len(self.class_names) != self.c_dim:
            raise ValueError(f"class_names has {len(self.class_names)} names for c_dim={self.c_dim}")
        self.layers = _check_layers("layers", self.layers, self.channel_width)
        self.d_layers = _check_layers("d_layers", self.d_layers, self.d_channel_width)
        if any(len(e) != 3 for e in self.layers) or any(len(e) != 2 for e in self.d_layers):
            raise ValueError("layers entries are [upsample, in, out], d_layers entries [downsample, out]")
        ups = sum(e[0] for e in self.layers)
        if 4 * 2**ups != self.resolution:
            raise ValueError(f"layers upsample 4x4 {ups} times, which is not the resolution {self.resolution}")
        if self.resolution >> sum(e[0] for e in self.d_layers) < 1:
            raise ValueError(f"d_layers downsample {self.resolution} px below 1 px")
        for prev, nxt in zip(self.layers, self.layers[1:]):
            if prev[2] != nxt[1]:
                raise ValueError(f"layers do not chain: {prev} then {nxt}")
        if self.deep:
            for up, cin, cout in self.layers:
                if cout != cin and cout * 2 != cin:
                    raise ValueError(f"deep blocks keep or halve their channels, got [{up}, {cin}, {cout}]")
                if cin * self.channel_width % 4:
                    raise ValueError("deep blocks need in channels divisible by 4 (the bottleneck)")
            if self.channel_width < self.img_channels:
                raise ValueError("deep conv_to_rgb keeps channel_width outputs: it must be >= img_channels")
        elif self.z_dim % (len(self.layers) + 1):
            raise ValueError(f"z_dim {self.z_dim} does not split into {len(self.layers) + 1} equal chunks "
                             f"(one for gen_z and one per block)")  # fmt: skip
        for name, pos, n in (
            ("attention_layer_position", self.attention_layer_position, len(self.layers)),
            ("d_attention_layer_position", self.d_attention_layer_position, len(self.d_layers)),
        ):
            if pos is not None and pos > n:
                raise ValueError(f"{name} {pos} is past the last of {n} blocks")  # fmt: skip
        if self.attention_layer_position is not None:
            ch = self.layers[self.attention_layer_position - 1][2] if self.attention_layer_position else \
                self.layers[0][1]  # fmt: skip
            if (ch * self.channel_width) % 8:
                raise ValueError("self-attention needs a multiple of 8 channels where it is placed")
        if self.d_attention_layer_position is not None:
            pos = self.d_attention_layer_position
            ch = self.d_layers[pos - 1][1] * self.d_channel_width if pos else self.img_channels
            if ch % 8:
                raise ValueError("discriminator self-attention needs a multiple of 8 channels where it is placed")

    @property
    def num_chunks(self) -> int:
        return 1 if self.deep else len(self.layers) + 1

    @property
    def z_chunk(self) -> int:
        return self.z_dim // self.num_chunks

    @property
    def condition_dim(self) -> int:
        """Length of each block's conditioning vector: cat(z or its chunk, class embedding)."""
        return (self.z_dim if self.deep else self.z_chunk) + self.embed_dim


# ---------------------------------------------------------------------------------------------------------------------
# Generator blocks


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


Affine = tuple[torch.Tensor, torch.Tensor]  # a norm's per-row (scale, shift) [N, C] at inference


def norm_relu(bn: ConditionalBatchNorm, x: torch.Tensor, cond: torch.Tensor | None, truncation: torch.Tensor | None,
              affine: Affine | None) -> torch.Tensor:  # fmt: skip
    """relu(bn(x)); with ``affine`` (inference, computed for every norm at once) x * scale + shift in two passes
    over x instead of five."""
    if affine is None:
        return F.relu(bn(x, cond, truncation))
    n, c = x.shape[:2]
    scale, shift = (t.to(x.dtype).reshape(n, c, 1, 1) for t in affine)
    return (x * scale).add_(shift).relu_()


class GenBlock(nn.Module):
    """The paper's BigGAN up-block: BN-ReLU-(up)-conv3x3-BN-ReLU-conv3x3, plus a (up)-conv1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, *, up: bool, n_stats: int,
                 eps: float) -> None:  # fmt: skip
        super().__init__()
        self.up = up
        self.bn_0 = ConditionalBatchNorm(in_channels, condition_dim, n_stats=n_stats, eps=eps, sn_eps=eps)
        self.conv_0 = SNConv2d(in_channels, out_channels, 3, eps=eps)
        self.bn_1 = ConditionalBatchNorm(out_channels, condition_dim, n_stats=n_stats, eps=eps, sn_eps=eps)
        self.conv_1 = SNConv2d(out_channels, out_channels, 3, eps=eps)
        self.learnable_sc = in_channels != out_channels or up
        if self.learnable_sc:
            self.conv_sc = SNConv2d(in_channels, out_channels, 1, eps=eps)

    def norms(self) -> list[ConditionalBatchNorm]:
        return [self.bn_0, self.bn_1]

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: torch.Tensor | None,
                affines: list[Affine] | None = None) -> torch.Tensor:  # fmt: skip
        a = affines or [None] * 2
        h = norm_relu(self.bn_0, x, cond, truncation, a[0])
        if self.up:
            h, x = upsample(h), upsample(x)
        h = self.conv_0(h)
        h = self.conv_1(norm_relu(self.bn_1, h, cond, truncation, a[1]))
        if self.learnable_sc:
            x = self.conv_sc(x)
        return h + x


class DeepGenBlock(nn.Module):
    """BigGAN-deep's bottleneck up-block (pytorch-pretrained-BigGAN's GenBlock): BN-ReLU-conv1x1 to in/4 channels,
    BN-ReLU-(up)-conv3x3, BN-ReLU-conv3x3, BN-ReLU-conv1x1 to out; the skip keeps the first out channels, (up)."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, *, up: bool, n_stats: int,
                 eps: float) -> None:  # fmt: skip
        super().__init__()
        self.up, self.out_channels = up, out_channels
        mid = in_channels // 4
        kw = dict(n_stats=n_stats, eps=eps, sn_eps=eps)
        self.bn_0 = ConditionalBatchNorm(in_channels, condition_dim, **kw)
        self.conv_0 = SNConv2d(in_channels, mid, 1, eps=eps)
        self.bn_1 = ConditionalBatchNorm(mid, condition_dim, **kw)
        self.conv_1 = SNConv2d(mid, mid, 3, eps=eps)
        self.bn_2 = ConditionalBatchNorm(mid, condition_dim, **kw)
        self.conv_2 = SNConv2d(mid, mid, 3, eps=eps)
        self.bn_3 = ConditionalBatchNorm(mid, condition_dim, **kw)
        self.conv_3 = SNConv2d(mid, out_channels, 1, eps=eps)

    def norms(self) -> list[ConditionalBatchNorm]:
        return [self.bn_0, self.bn_1, self.bn_2, self.bn_3]

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: torch.Tensor | None,
                affines: list[Affine] | None = None) -> torch.Tensor:  # fmt: skip
        a = affines or [None] * 4
        h = self.conv_0(norm_relu(self.bn_0, x, cond, truncation, a[0]))
        h = norm_relu(self.bn_1, h, cond, truncation, a[1])
        if self.up:
            h = upsample(h)
        h = self.conv_1(h)
        h = self.conv_2(norm_relu(self.bn_2, h, cond, truncation, a[2]))
        h = self.conv_3(norm_relu(self.bn_3, h, cond, truncation, a[3]))
        x = x[:, : self.out_channels]
        if self.up:
            x = upsample(x)
        return h + x


# ---------------------------------------------------------------------------------------------------------------------
# Generator


class Generator(nn.Module):
    """gen_z -> blocks (with self-attention) -> BN-ReLU-conv_to_rgb -> tanh."""

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = c = config
        ch, eps = c.channel_width, c.eps
        self.first_channels = c.layers[0][1] * ch
        gen_in = c.condition_dim if c.deep else c.z_chunk
        self.gen_z = SNLinear(gen_in, 4 * 4 * self.first_channels, eps=eps)
        block = DeepGenBlock if c.deep else GenBlock
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(c.layers):
            if i == c.attention_layer_position:
                layers.append(SelfAttention(cin * ch, eps=eps))
            layers.append(block(cin * ch, cout * ch, c.condition_dim, up=up, n_stats=c.n_stats, eps=eps))
        if c.attention_layer_position == len(c.layers):
            layers.append(SelfAttention(c.layers[-1][2] * ch, eps=eps))
        self.layers = nn.ModuleList(layers)
        last = c.layers[-1][2] * ch
        self.bn = ConditionalBatchNorm(last, None, n_stats=c.n_stats, eps=eps)
        self.conv_to_rgb = SNConv2d(last, last if c.deep else c.img_channels, 3, eps=eps)

    def forward(self, z: torch.Tensor, embed: torch.Tensor, truncation: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        if c.deep:  # the whole z and the embedding everywhere
            first = torch.cat([z, embed], dim=1)
            conds = [first] * len(c.layers)
        else:  # hierarchical: chunk 0 alone to gen_z, chunk k with the embedding to block k
            chunks = z.split(c.z_chunk, dim=1)
            first, conds = chunks[0], [torch.cat([chunk, embed], dim=1) for chunk in chunks[1:]]
        # [N, 4, 4, C] viewed as NCHW is channels-last, and the blocks keep it so: oneDNN's convolutions run faster
        # on it and the 1x1 convolutions become per-row products over channels (layers.conv2d).
        h = self.gen_z(first).reshape(-1, 4, 4, self.first_channels).permute(0, 3, 1, 2)
        blocks = [layer for layer in self.layers if not isinstance(layer, SelfAttention)]
        inference = not self.training and all(m._collect is None for m in self.bn_list(blocks))
        affines = self.affines(blocks, conds, truncation, h.shape[0]) if inference else None
        k = 0
        for layer in self.layers:
            if isinstance(layer, SelfAttention):
                h = layer(h)
            else:
                h = layer(h, conds[k], truncation, affines[k] if affines else None)
                k += 1
        h = self.conv_to_rgb(norm_relu(self.bn, h, None, truncation, affines[-1][0] if affines else None))
        return torch.tanh(h[:, : c.img_channels])

    def bn_list(self, blocks: list[nn.Module]) -> list[ConditionalBatchNorm]:
        return [m for b in blocks for m in b.norms()] + [self.bn]

    def affines(self, blocks: list[nn.Module], conds: list[torch.Tensor], truncation: torch.Tensor | None,
                n: int) -> list[list[Affine]]:  # fmt: skip
        """Every norm's inference (scale, shift), per block (the last entry: [the final norm's]): one gather of the
        standing statistics of all norms, and one product of each distinct condition vector (BigGAN-deep: one for the
        whole network) with its norms' concatenated scale and offset weights, instead of three ops per norm."""
        norms = self.bn_list(blocks)
        table = self._concat("stats", [t for m in norms for t in (m.running_means, m.running_vars)], dim=1)
        stats = standing_statistics(table, truncation, n).split([2 * m.num_features for m in norms], dim=1)
        gain_offsets: list[torch.Tensor] = []
        k = 0
        while k < len(blocks):  # blocks sharing one condition tensor (all of them in BigGAN-deep) share a product
            j = k + 1
            while j < len(blocks) and conds[j] is conds[k]:
                j += 1
            group = [m for b in blocks[k:j] for m in b.norms()]
            weight = self._concat(f"cond{k}", [lin.sn_weight() for m in group for lin in (m.scale, m.offset)], dim=0)
            gain_offsets += linear(conds[k], weight.to(conds[k].dtype)).split([2 * m.num_features for m in group], 1)
            k = j
        out, i = [], 0
        for b in blocks:
            out.append([m.affine(None, n, gain_offsets[i + q], stats[i + q]) for q, m in enumerate(b.norms())])
            i += len(out[-1])
        out.append([self.bn.affine(None, n, None, stats[-1])])
        return out

    def _concat(self, name: str, parts: list[torch.Tensor], dim: int) -> torch.Tensor:
        """torch.cat(parts, dim), kept between inference calls until one of the parts changes (new weights, new
        statistics): the concatenated tables are rebuilt only when what they hold does."""
        if torch.is_grad_enabled() or _tracing():
            return torch.cat(parts, dim=dim)
        versions = [t._version for t in parts]
        cache = self.__dict__.setdefault("_concat_cache", {})
        hit = cache.get(name)  # (parts, their versions, the concatenation); the parts are held, so `is` is safe
        if hit is None or hit[1] != versions or any(a is not b for a, b in zip(hit[0], parts, strict=True)):
            hit = cache[name] = (parts, versions, torch.cat(parts, dim=dim))
        return hit[2]


class BigGANGenerator(nn.Module):
    """(z [N, z_dim], class ids [N] or class vectors [N, c_dim], truncation) -> images [N, C, R, R] in [-1, 1]."""

    family = "biggan"

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Linear(config.c_dim, config.embed_dim, bias=False)
        if self.embeddings.weight.device.type != "meta":
            nn.init.orthogonal_(self.embeddings.weight)
        self.generator = Generator(config)

    def class_vector(self, c: torch.Tensor) -> torch.Tensor:
        """Class ids [N] -> one-hot [N, c_dim]; class vectors pass through (as float)."""
        if c.ndim == 1:
            return F.one_hot(c.long(), self.config.c_dim).to(torch.float32)
        return c.to(torch.float32)

    def embed(self, c: torch.Tensor) -> torch.Tensor:
        """The shared class embedding of class ids or class vectors (linear: lerped vectors give lerped embeddings)."""
        return linear(self.class_vector(c), self.embeddings.weight)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: float | torch.Tensor | None = None) -> torch.Tensor:
        """truncation: a float, a tensor [N] (one per row), or None (1.0): which standing statistics the batch norms
        read in eval mode. It does not touch z: draw z from the truncated normal at the same value."""
        if truncation is not None:
            truncation = torch.as_tensor(truncation, dtype=torch.float32, device=z.device).reshape(-1)
            truncation = truncation.expand(z.shape[0])
        return self.generator(z.to(torch.float32), self.embed(c), truncation)

    def g_params(self) -> list[nn.Parameter]:
        """The weights orthogonal regularisation applies to: every matrix and filter but the shared embedding."""
        return [p for n, p in self.named_parameters() if p.ndim >= 2 and not n.startswith("embeddings.")]


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator (BigGAN-PyTorch's residual D with a projection head; names are ours)


class DiscBlock(nn.Module):
    """(ReLU)-conv3x3-ReLU-conv3x3-(avgpool), plus a conv1x1-(avgpool) shortcut; the first block skips the leading
    ReLU and pools its shortcut before the 1x1 (so the image itself is never rectified)."""

    def __init__(self, in_channels: int, out_channels: int, *, down: bool, preactivation: bool, eps: float) -> None:
        super().__init__()
        self.down, self.preactivation = down, preactivation
        self.conv1 = SNConv2d(in_channels, out_channels, 3, eps=eps)
        self.conv2 = SNConv2d(out_channels, out_channels, 3, eps=eps)
        self.learnable_sc = in_channels != out_channels or down
        if self.learnable_sc:
            self.conv_sc = SNConv2d(in_channels, out_channels, 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.learnable_sc:
            if self.preactivation:
                x = self.conv_sc(x)
                x = F.avg_pool2d(x, 2) if self.down else x
            else:
                x = F.avg_pool2d(x, 2) if self.down else x
                x = self.conv_sc(x)
        return h + x


class ProjectionDiscriminator(nn.Module):
    """Residual blocks (with self-attention), ReLU, sum over positions, then linear(h) + <embed(class), h>
    (the projection discriminator, Miyato & Koyama 2018). Shared by BigGAN and SAGAN: built from
    ``d_channel_width``, ``d_layers``, ``d_attention_layer_position``, ``img_channels``, ``c_dim`` and ``eps``."""

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = c = config
        ch, eps = c.d_channel_width, c.eps
        blocks: list[nn.Module] = []
        cin = c.img_channels
        for i, (down, mult) in enumerate(c.d_layers):
            if i == c.d_attention_layer_position:
                blocks.append(SelfAttention(cin, eps=eps))
            blocks.append(DiscBlock(cin, mult * ch, down=down, preactivation=i > 0, eps=eps))
            cin = mult * ch
        if c.d_attention_layer_position == len(c.d_layers):
            blocks.append(SelfAttention(cin, eps=eps))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(cin, 1, eps=eps)
        self.embed = SNEmbedding(c.c_dim, cin, eps=eps) if c.c_dim else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = img
        for block in self.blocks:
            h = block(h)
        h = F.relu(h).sum(dim=[2, 3])
        out = self.linear(h)
        if self.embed is not None:
            if c is None:
                raise ValueError("this discriminator is class-conditional: a class is required")
            out = out + (self.embed(c) * h).sum(dim=1, keepdim=True)
        return out


class BigGANDiscriminator(ProjectionDiscriminator):
    pass
