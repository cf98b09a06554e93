"""ViT-VQGAN (Yu et al. 2022, "Vector-quantized image modeling with improved VQGAN"): a transformer first stage.

Encoder: non-overlapping patches (a stride-p convolution) + learned position embeddings -> pre-norm transformer
blocks -> LayerNorm. Quantiser: factorised codes: the encoder output is projected to a low dimension (``lookup_dim``),
l2-normalised, and matched to l2-normalised codes by cosine similarity (``vq_nearest(metric="cosine")``), then
projected back. Decoder: position embeddings + transformer blocks + LayerNorm, then a linear map of each token to its
patch's pixels. Trained with the same losses as VQ-GAN (``ganserve.train.vqgan``); the same GPT prior models the codes.

Google released no ViT-VQGAN weights, so there is no layout to follow for the transformer; it reuses the prior's block
(minGPT names: ``blocks.N.ln1/ln2``, ``attn.key/query/value/proj``, ``mlp.0/mlp.2``) and taming's quantiser names
(``quantize.embedding.weight``, with ``quantize.proj_in`` / ``proj_out`` for the factorisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganserve.models.config import ModelConfig, check_power_of_two
from ganserve.models.layers import Conv2d, VectorQuantizer
from ganserve.models.transformer import Block, Linear
from ganserve.models.vqgan import MAX_CODEBOOK, PriorFieldsMixin, VQImageModel


@dataclass
class ViTVQGANFirstStageConfig(ModelConfig):
    resolution: int = 32
    img_channels: int = 1
    patch_size: int = 4
    dim: int = 128
    enc_layers: int = 4
    dec_layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    n_embed: int = 512
    lookup_dim: int = 8  # factorised code dimension
    dropout: float = 0.0
    beta: float = 0.25
    ema: bool = False

    def __post_init__(self) -> None:
        check_power_of_two("resolution", self.resolution, 4, 1024)
        check_power_of_two("patch_size", self.patch_size, 1, 256)
        self.check_ranges({
            "img_channels": (1, 4), "dim": (1, 4096), "enc_layers": (1, 64), "dec_layers": (1, 64), "heads": (1, 64),
            "mlp_ratio": (1, 16), "n_embed": (1, MAX_CODEBOOK), "lookup_dim": (1, 4096), "dropout": (0.0, 1.0),
            "beta": (0.0, 100.0),
        })  # fmt: skip
        if not isinstance(self.ema, bool):
            raise ValueError(f"ema must be true or false, got {self.ema!r}")
        if self.patch_size > self.resolution:
            raise ValueError(f"patch_size {self.patch_size} exceeds resolution {self.resolution}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if (self.resolution // self.patch_size) ** 2 > 4096:
            raise ValueError("more than 4096 patches")

    @property
    def code_size(self) -> int:
        return self.resolution // self.patch_size


def _block(cfg: ViTVQGANFirstStageConfig) -> Block:
    return Block(cfg.dim, cfg.heads, cfg.dropout, causal=False, mlp_ratio=cfg.mlp_ratio)


class ViTEncoder(nn.Module):
    def __init__(self, cfg: ViTVQGANFirstStageConfig) -> None:
        super().__init__()
        self.patch_embed = Conv2d(cfg.img_channels, cfg.dim, cfg.patch_size, cfg.patch_size)
        self.pos_emb = nn.Parameter(torch.randn(1, cfg.code_size**2, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[_block(cfg) for _ in range(cfg.enc_layers)])
        self.ln_f = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, R, R] -> tokens [N, L, dim] (raster order)."""
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.ln_f(self.blocks(h + self.pos_emb))


class ViTDecoder(nn.Module):
    def __init__(self, cfg: ViTVQGANFirstStageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_emb = nn.Parameter(torch.randn(1, cfg.code_size**2, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[_block(cfg) for _ in range(cfg.dec_layers)])
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.to_pixels = Linear(cfg.dim, cfg.patch_size**2 * cfg.img_channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [N, L, dim] -> images [N, C, R, R] (unclamped)."""
        cfg, n = self.cfg, tokens.shape[0]
        g, p, c = cfg.code_size, cfg.patch_size, cfg.img_channels
        h = self.to_pixels(self.ln_f(self.blocks(tokens + self.pos_emb)))  # [N, L, p*p*C]
        return h.reshape(n, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, g * p, g * p)


class ViTVQGANFirstStage(nn.Module):
    """Image [N, C, R, R] <-> codes [N, R/p, R/p]."""

    def __init__(self, config: ViTVQGANFirstStageConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.encoder = ViTEncoder(cfg)
        self.decoder = ViTDecoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.dim, beta=cfg.beta, normalize=True, lookup_dim=cfg.lookup_dim,
                                        ema=cfg.ema)  # fmt: skip

    @property
    def code_shape(self) -> tuple[int, int]:
        return self.config.code_size, self.config.code_size

    @property
    def num_codes(self) -> int:
        return self.config.n_embed

    def encode(self, x: torch.Tensor):  # -> VQOutput, indices [N, L]
        return self.quantize(self.encoder(x))

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        g = self.config.code_size
        return self.encode(x).indices.reshape(x.shape[0], g, g)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantize.lookup(codes.reshape(codes.shape[0], -1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.encode(x)
        g = self.config.code_size
        return self.decoder(q.quantized), q.loss, q.indices.reshape(x.shape[0], g, g)

    def last_layer(self) -> torch.Tensor:
        return self.decoder.to_pixels.weight


@dataclass
class ViTVQGANConfig(PriorFieldsMixin, ViTVQGANFirstStageConfig):
    first_stage_config_class = ViTVQGANFirstStageConfig

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


class ViTVQGAN(VQImageModel):
    family = "vit_vqgan"
    config_class = ViTVQGANConfig
    first_stage_class = ViTVQGANFirstStage
