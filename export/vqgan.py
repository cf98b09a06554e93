"""VQ-GAN and ViT-VQGAN export: three graphs, and the sampling loop stays on the host.

encoder:    image [N, C, R, R] float                                   -> codes [N, h, w] int64
decoder:    codes [N, h, w] int64                                      -> image [N, C, R, R]
prior_step: tokens [N] int64, pos [] int64,                            -> [N, num_codes + layers * 2 * n_embd]: the next
            cache [N, layers, 2, heads, block_size, head_dim] float       code's logits, then this position's keys and
                                                                          values (the host writes them into its cache)

The cache has a fixed length (the prior's block size) and the step masks the slots at and after ``pos``, so one graph
serves every position with a dynamic batch only. The runtime (``ExportedVQModel``) exposes what ``VQSampler`` calls
(encode_codes, decode_codes, step, empty_cache, start_tokens ...), so the host loop that samples eagerly
(``ganserve.models.transformer.sample_codes``) samples from the graphs too: same codes, same filters, same seeds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganserve.export.registry import ExportedModel, Exporter, GraphSpec, Runner, register_exporter


class _EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.first_stage = model.first_stage

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # *inputs: the registry's dynamic-shape convention
        (x,) = inputs
        return self.first_stage.encode_codes(x)


class _DecoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.first_stage = model.first_stage

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        (codes,) = inputs
        return self.first_stage.decode_codes(codes)


class _PriorStepGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prior = model.prior

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        tokens, pos, cache = inputs
        return self.prior.step(tokens, pos, cache)


class VQExporter(Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        h, w = model.code_shape
        prior = model.prior
        num_codes, vocab, block = prior.config.num_codes, prior.config.vocab_size, prior.config.block_size

        def random_codes(n: int, gen: torch.Generator) -> torch.Tensor:
            return torch.randint(0, num_codes, [n, h, w], generator=gen)

        def encoder_inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            # Decodings of random codes: images the encoder maps back to codes far from ties between two codes.
            with torch.no_grad():
                return (model.decode_codes(random_codes(n, gen)).clamp(-1, 1),)

        def prior_inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            tokens = torch.randint(0, vocab, [n], generator=gen)
            pos = torch.randint(0, block, [], generator=gen)
            cache = model.empty_cache(n).normal_(generator=gen)
            return tokens, pos, cache

        return [
            GraphSpec("encoder", _EncoderGraph(model).eval(), ["image"], "codes", encoder_inputs, batched=[True],
                      half=False),
            GraphSpec("decoder", _DecoderGraph(model).eval(), ["codes"], "image",
                      lambda n, gen: (random_codes(n, gen),), batched=[True]),
            GraphSpec("prior_step", _PriorStepGraph(model).eval(), ["tokens", "pos", "cache"], "logits_kv",
                      prior_inputs, batched=[True, False, True], half=False),
        ]  # fmt: skip

    def manifest(self, model: nn.Module) -> dict[str, Any]:
        h, w = model.code_shape
        return {
            "code_shape": [h, w],
            "num_codes": int(model.num_codes),
            "cache_shape": list(model.empty_cache(1).shape[1:]),
            "img_channels": int(model.config.img_channels),
        }

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedVQModel(manifest, runners, device)


register_exporter("vqgan")(type("VQGANExporter", (VQExporter,), {}))
register_exporter("vit_vqgan")(type("ViTVQGANExporter", (VQExporter,), {}))


class ExportedVQModel(ExportedModel):
    """A VQ family model backed by exported graphs (ONNX Runtime or torch.export): the sampler's surface."""

    def __init__(self, manifest: dict[str, Any], runners: dict[str, Runner], device: str) -> None:
        super().__init__(manifest)
        self.code_shape = tuple(manifest["code_shape"])
        self.num_codes = int(manifest["num_codes"])
        self.cache_shape = list(manifest["cache_shape"])
        self.runners = runners
        self.finish(device)

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.runners["encoder"](x.float()).long()

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.runners["decoder"](codes.long())

    def start_tokens(self, classes: torch.Tensor | None, n: int) -> torch.Tensor:
        if self.config.c_dim:
            if classes is None:
                raise ValueError("this prior is class-conditional: classes are required")
            return classes.long() + self.num_codes
        return torch.full([n], self.num_codes, dtype=torch.long)

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        return self.runners["prior_step"](tokens.long(), pos.long().reshape([]), cache)

    def empty_cache(self, n: int) -> torch.Tensor:
        return torch.zeros([n, *self.cache_shape], device=self.anchor.device)
