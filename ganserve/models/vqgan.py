"""VQ-GAN (Esser, Rombach, Ommer 2021): a convolutional autoencoder with a vector-quantised bottleneck (the first
stage), a PatchGAN discriminator to train it, and the whole model: first stage + a GPT prior over its codes.

Parameter names follow CompVis/taming-transformers so its checkpoints map 1:1 (``taming/models/vqgan.py`` VQModel,
``taming/modules/diffusionmodules/model.py`` Encoder/Decoder, ``taming/modules/vqvae/quantize.py``,
``taming/modules/discriminator/model.py``): ``encoder.conv_in``, ``encoder.down.N.block.M.{norm1,conv1,norm2,conv2,
nin_shortcut}``, ``encoder.down.N.attn.M.{norm,q,k,v,proj_out}``, ``encoder.down.N.downsample.conv``,
``encoder.mid.{block_1,attn_1,block_2}``, ``encoder.norm_out``, ``encoder.conv_out``; the decoder the same with
``up.N.block.M`` and ``up.N.upsample.conv``; ``quant_conv``, ``post_quant_conv``, ``quantize.embedding.weight``
(with the EMA codebook also ``quantize.embedding.cluster_size`` / ``embed_avg``, as taming's EMAVectorQuantizer);
the discriminator ``main.N`` (NLayerDiscriminator). The layers' arithmetic is taming's (swish, GroupNorm with
eps 1e-6, a right/bottom-padded stride-2 downsampling conv, nearest upsampling + conv, single-head attention with
1x1 convolutions). Our GroupNorm group count is a config value (taming: always 32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.config import ModelConfig, check_power_of_two
from ganserve.models.layers import Conv2d, VectorQuantizer, _tracing, batch_invariant_enabled
from ganserve.models.transformer import GPTPrior, GPTPriorConfig

MAX_CODEBOOK = 1 << 16


def norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def _inference() -> bool:
    """No autograd and no tracing: results may be written in place over fresh intermediates (same values)."""
    return not torch.is_grad_enabled() and not _tracing()


def norm_swish(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """swish(GroupNorm(x)) (swish = x * sigmoid(x), one fused op); at inference the swish overwrites the norm's
    fresh output (one map less to allocate)."""
    return F.silu(norm(x), inplace=_inference())


# A 3x3 convolution of a 2x nearest-upsampled map, as a stride-2 transposed convolution (padding 1) of the source
# map: along each axis, output 2i reads source i-1 with tap 0 and source i with taps 1+2; output 2i+1 reads source i
# with taps 0+1 and source i+1 with tap 2. A transposed convolution gives output o = 2s + k - 1 the tap k of source s,
# so its 4 taps per axis are [w2, w1 + w2, w0 + w1, w0].
_TRANSPOSED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def transposed_upsample_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 filter [O, I, 3, 3] meant for a 2x nearest-upsampled map -> the 4x4 transposed-convolution filter
    [I, O, 4, 4] (stride 2, padding 1) that gives the same output straight from the source map."""
    taps = _TRANSPOSED_TAPS.to(weight)
    return torch.einsum("pk,oikl,ql->iopq", taps, weight, taps).contiguous()


class Upsample(nn.Module):
    """Nearest 2x upsampling then a 3x3 convolution. At inference computed without building the upsampled map: one
    stride-2 transposed convolution with the combined 4x4 filter (4 taps per output pixel instead of 9, written
    interleaved by the kernel). Equal up to float rounding (taps that read the same pixel are summed first)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or _tracing() or x.ndim != 4:
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        weight, bias = self._transposed_weight().to(x.dtype), self.conv.bias.to(x.dtype)
        if not _per_row(x):
            return F.conv_transpose2d(x, weight, bias, stride=2, padding=1)
        # oneDNN picks its 4x4 deconvolution's blocking by batch size and thread count (two threads, 32 channels:
        # batches of 3 and 7 moved rows by an ulp; four threads: 64 and 256 channels too): one call per row is
        # batch-invariant by construction, and still faster than the 3x3 convolution of the upsampled map at 1-32
        # rows (measured, one thread).
        rows = [F.conv_transpose2d(x[i : i + 1], weight, bias, stride=2, padding=1) for i in range(x.shape[0])]
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    def _transposed_weight(self) -> torch.Tensor:
        w = self.conv.weight
        cached = self.__dict__.get("_transposed")  # rebuilt when the weight changes (new tensor or in-place update)
        if cached is None or cached[0] is not w or cached[1] != w._version:
            cached = self.__dict__["_transposed"] = (w, w._version, transposed_upsample_weight(w.detach()))
        return cached[2]


def _per_row(x: torch.Tensor) -> bool:
    """Batch-invariant mode on the CPU: the layers whose kernels move with the batch size run one row at a time."""
    return x.device.type == "cpu" and batch_invariant_enabled()


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = norm(in_channels, groups)
        self.conv1 = Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(norm_swish(self.norm1, x))
        h = norm_swish(self.norm2, h)
        h = self.conv2(self.dropout(h) if self.training else h)
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return h.add_(x) if _inference() else x + h  # h is the convolution's fresh output; x + h == h + x


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map (1x1 convolutions for q, k, v and the output)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = norm(channels, groups)
        self.q = Conv2d(channels, channels, 1)
        self.k = Conv2d(channels, channels, 1)
        self.v = Conv2d(channels, channels, 1)
        self.proj_out = Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # [b, hw, c]
        w = torch.bmm(q, k.reshape(b, c, hh * ww))  # [b, hw(q), hw(k)]
        w = w.mul_(int(c) ** -0.5) if _inference() else w * (int(c) ** -0.5)
        w = w.softmax(dim=2)
        h = self.proj_out(torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww))
        return h.add_(x) if _inference() else x + h


def _level(**modules: nn.Module) -> nn.Module:
    m = nn.Module()
    for k, v in modules.items():
        setattr(m, k, v)
    return m


@dataclass
class VQGANFirstStageConfig(ModelConfig):
    """taming's ddconfig + n_embed / embed_dim, and the quantiser options."""

    resolution: int = 32
    img_channels: int = 1
    ch: int = 64
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 1
    attn_resolutions: list[int] = field(default_factory=list)  # besides the middle block's, which is always there
    z_channels: int = 64
    embed_dim: int = 64
    n_embed: int = 512
    dropout: float = 0.0
    norm_groups: int = 32
    beta: float = 0.25
    ema: bool = False  # EMA codebook instead of the codebook loss

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution, 4, 1024)
        self.check_ranges({
            "img_channels": (1, 4), "ch": (1, 1024), "num_res_blocks": (1, 16), "z_channels": (1, 4096),
            "embed_dim": (1, 4096), "n_embed": (1, MAX_CODEBOOK), "dropout": (0.0, 1.0), "norm_groups": (1, 1024),
            "beta": (0.0, 100.0),
        })  # fmt: skip
        if not isinstance(self.ema, bool):
            raise ValueError(f"ema must be true or false, got {self.ema!r}")
        for name, lo, hi, most in (("ch_mult", 1, 64, 8), ("attn_resolutions", 1, 1024, 8)):
            v = getattr(self, name)
            if (
                not isinstance(v, (list, tuple))
                or len(v) > most
                or any(isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi for x in v)
            ):
                raise ValueError(f"{name} must be a list of at most {most} integers in [{lo}, {hi}], got {v!r}")
            setattr(self, name, list(v))
        if not self.ch_mult:
            raise ValueError("ch_mult must not be empty")
        if self.resolution >> (len(self.ch_mult) - 1) < 1:
            raise ValueError(f"{len(self.ch_mult) - 1} downsamplings exceed resolution {self.resolution}")
        for c in {self.ch * m for m in self.ch_mult}:
            if c % self.norm_groups:
                raise ValueError(f"channel count {c} is not a multiple of norm_groups {self.norm_groups}")
        if self.ch * max(self.ch_mult) > 8192:
            raise ValueError("ch * max(ch_mult) must be at most 8192")

    @property
    def code_size(self) -> int:
        return self.resolution >> (len(self.ch_mult) - 1)


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANFirstStageConfig) -> None:
        super().__init__()
        g, ch, mult = cfg.norm_groups, cfg.ch, cfg.ch_mult
        self.conv_in = Conv2d(cfg.img_channels, ch, 3, 1, 1)
        in_mult = [1, *mult]
        res = cfg.resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(mult):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_mult[i], ch * m
            for _ in range(cfg.num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, g, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    attn.append(AttnBlock(block_in, g))
            level = _level(block=block, attn=attn)
            if i != len(mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = _level(block_1=ResnetBlock(block_in, block_in, g, cfg.dropout), attn_1=AttnBlock(block_in, g),
                          block_2=ResnetBlock(block_in, block_in, g, cfg.dropout))  # fmt: skip
        self.norm_out = norm(block_in, g)
        self.conv_out = Conv2d(block_in, cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(norm_swish(self.norm_out, h))


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANFirstStageConfig) -> None:
        super().__init__()
        g, ch, mult = cfg.norm_groups, cfg.ch, cfg.ch_mult
        block_in = ch * mult[-1]
        res = cfg.code_size
        self.conv_in = Conv2d(cfg.z_channels, block_in, 3, 1, 1)
        self.mid = _level(block_1=ResnetBlock(block_in, block_in, g, cfg.dropout), attn_1=AttnBlock(block_in, g),
                          block_2=ResnetBlock(block_in, block_in, g, cfg.dropout))  # fmt: skip
        up: list[nn.Module] = []
        for i in reversed(range(len(mult))):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out, g, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    attn.append(AttnBlock(block_in, g))
            level = _level(block=block, attn=attn)
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            up.insert(0, level)  # up[0] is the full-resolution level, as in taming
        self.up = nn.ModuleList(up)
        self.norm_out = norm(block_in, g)
        self.conv_out = Conv2d(block_in, cfg.img_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(norm_swish(self.norm_out, h))


class VQGANFirstStage(nn.Module):
    """The autoencoder: image [N, C, R, R] in [-1, 1] <-> codes [N, r, r] (r = R / 2^(levels - 1))."""

    def __init__(self, config: VQGANFirstStageConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=cfg.beta, ema=cfg.ema)
        self.quant_conv = Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def code_shape(self) -> tuple[int, int]:
        return self.config.code_size, self.config.code_size

    @property
    def num_codes(self) -> int:
        return self.config.n_embed

    def encode(self, x: torch.Tensor):  # -> VQOutput
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> code indices [N, r, r] (``encode``'s, without the quantised map and loss)."""
        return self.quantize.nearest(self.quant_conv(self.encoder(x)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices [N, r, r] -> images [N, C, R, R] (unclamped)."""
        # The lookup is [N, r, r, D] viewed channels-first; made NCHW so the decoder's GroupNorms get the layout their
        # CPU kernel is fast on (channels-last ran them ~10x slower and converted every filter in every call).
        return self.decode(self.quantize.lookup(codes).contiguous())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (reconstruction, quantiser loss, codes)."""
        q = self.encode(x)
        return self.decode(q.quantized), q.loss, q.indices

    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive discriminator weight compares gradient norms at."""
        return self.decoder.conv_out.weight


# ---------------------------------------------------------------------------------------------------------------------
# PatchGAN discriminator (pix2pix's NLayerDiscriminator, as taming uses it)


class PatchDiscriminator(nn.Module):
    """Conv(4, s2) + LeakyReLU, then n_layers - 1 blocks Conv(4, s2) + BatchNorm + LeakyReLU, one Conv(4, s1) block,
    and a Conv(4, s1) to one logit per patch. Names: ``main.N`` as taming's NLayerDiscriminator."""

    def __init__(self, img_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(img_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                    nn.LeakyReLU(0.2, True)]  # fmt: skip
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]  # fmt: skip
        self.main = nn.Sequential(*seq)
        for m in self.modules():  # taming's weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def make_discriminator(config: Any) -> PatchDiscriminator:
    """The PatchGAN for a model config: 2 strided layers (patches of 16 px) up to 32 px images, 3 above."""
    res = int(config.resolution)
    return PatchDiscriminator(int(config.img_channels), ndf=32 if res <= 32 else 64, n_layers=2 if res <= 32 else 3)


# ---------------------------------------------------------------------------------------------------------------------
# The whole model: first stage + prior


class VQImageModel(nn.Module):
    """A first stage and a GPT prior over its codes, as one model (``parts``: ``first_stage`` and ``prior``).

    Subclasses set ``family`` and the config classes. What a sampler uses: ``encode_codes``, ``decode_codes``,
    ``prior`` (its ``step`` and ``empty_cache``), ``code_shape`` and ``config`` (resolution, img_channels, c_dim,
    class_names)."""

    family = ""
    config_class: type = ModelConfig
    first_stage_class: type = nn.Module

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.first_stage = self.first_stage_class(config.first_stage_config())
        self.prior = GPTPrior(config.prior_config())

    @classmethod
    def from_parts(cls, parts: dict[str, nn.Module]) -> VQImageModel:
        first, prior = parts["first_stage"], parts["prior"]
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = cls.config_class.from_parts(first.config, prior.config)
        model.first_stage, model.prior = first, prior
        return model

    def parts(self) -> dict[str, nn.Module]:
        return {"first_stage": self.first_stage, "prior": self.prior}

    @property
    def code_shape(self) -> tuple[int, int]:
        return self.first_stage.code_shape

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.first_stage.encode_codes(x)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.first_stage.decode_codes(codes)

    @property
    def num_codes(self) -> int:
        return self.prior.config.num_codes

    def start_tokens(self, classes: torch.Tensor | None, n: int) -> torch.Tensor:
        """The prior's first token per row (the class token, or the start token of an unconditional prior)."""
        return self.prior.start_tokens(classes, n)

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """One prior step with a KV cache (see ``GPTPrior.step``)."""
        return self.prior.step(tokens, pos, cache)

    def empty_cache(self, n: int) -> torch.Tensor:
        return self.prior.empty_cache(n)


PRIOR_FIELDS = {"prior_layers": "n_layer", "prior_heads": "n_head", "prior_embd": "n_embd",
                "prior_dropout": "dropout"}  # fmt: skip


class PriorFieldsMixin:
    """The whole model's config: the first stage's fields, the prior's as ``prior_*``, and the classes."""

    first_stage_config_class: type = ModelConfig

    def prior_config(self) -> GPTPriorConfig:
        fs = self.first_stage_config()
        h, w = self.code_grid(fs)
        return GPTPriorConfig(num_codes=self.n_embed, code_height=h, code_width=w, c_dim=self.c_dim,
                              class_names=list(self.class_names),
                              **{v: getattr(self, k) for k, v in PRIOR_FIELDS.items()})  # fmt: skip

    def first_stage_config(self):
        names = {f for f in self.first_stage_config_class.__dataclass_fields__}
        return self.first_stage_config_class(**{k: getattr(self, k) for k in names})

    @classmethod
    def from_parts(cls, first: Any, prior: GPTPriorConfig):
        h, w = cls.code_grid(first)
        if (prior.code_height, prior.code_width) != (h, w) or prior.num_codes != first.n_embed:
            raise ValueError(f"the prior models a {prior.code_height}x{prior.code_width} grid of {prior.num_codes} "
                             f"codes; the first stage makes {h}x{w} of {first.n_embed}")  # fmt: skip
        return cls(**first.to_dict(), c_dim=prior.c_dim, class_names=list(prior.class_names),
                   **{k: getattr(prior, v) for k, v in PRIOR_FIELDS.items()})  # fmt: skip

    def check_prior(self) -> None:
        self.prior_config()  # the prior's own range checks

    @staticmethod
    def code_grid(first: Any) -> tuple[int, int]:
        raise NotImplementedError


@dataclass
class VQGANConfig(PriorFieldsMixin, VQGANFirstStageConfig):
    """VQ-GAN + prior: every first-stage field, ``c_dim`` / ``class_names`` and the prior's size."""

    first_stage_config_class = VQGANFirstStageConfig

    c_dim: int = 0
    class_names: list[str] = field(default_factory=list)
    prior_layers: int = 4
    prior_heads: int = 4
    prior_embd: int = 128
    prior_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_prior()

    @staticmethod
    def code_grid(first: Any) -> tuple[int, int]:
        return first.code_size, first.code_size


class VQGAN(VQImageModel):
    family = "vqgan"
    config_class = VQGANConfig
    first_stage_class = VQGANFirstStage
