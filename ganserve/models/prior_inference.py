"""The GPT prior's inference path (no autograd, no tracing): the sampling loop's step, and in batch-invariant mode the
whole-sequence forward, built from the same fixed-shape products so that both give a token the same bits.

Why fixed shapes: a BLAS picks its kernel by the shape of a product, and a row's bits change with it (one token at a
time against a whole sequence, one image against a batch). In batch-invariant mode every linear layer multiplies
exactly CHUNK rows (tokens, zero padded) at a time, and attention takes one query row per (image, head) against that
image's keys up to the query's position, in the step and in the forward alike (the forward repeats the step's product
per position). A token's bits then depend on nothing but its own inputs (tests/test_prior.py), and the KV-cache loop
samples exactly the codes of the loop that re-runs the whole sequence (issue 22: the two had drifted apart by ~1e-5 in
the logits at every position, and a code flipped at batch 32).

Speed (the step runs once per code): the query, key and value layers are one product, the attention scale and causal
mask cost nothing (the scale is folded into the query's weights, and a position's product covers only the slots it
sees), LayerNorm and GELU are called directly, and the weights are gathered once
per sampling run (``Layers``), not looked up through the modules at every position. The cache is
``GPTPrior.empty_cache``'s: the usual [N, layers, 2, heads, block_size, head_dim] shape laid out layer-major, so each
layer's keys (and values) are one contiguous [N * heads, block_size, head_dim] block written in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models import layers

CHUNK = 8  # rows per matrix product in batch-invariant mode


def _invariant(x: torch.Tensor) -> bool:
    """Batch-invariant mode on the CPU in fp32: where the fixed-shape products are used (elsewhere layers.linear)."""
    return getattr(layers._state, "batch_invariant", False) and x.dtype == torch.float32 and x.device.type == "cpu"


def fixed_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [R, in] @ weight_t [in, out] (+ bias). In batch-invariant mode on the CPU in fp32 the rows go through products
    of exactly CHUNK rows (zero padded), so a row's result depends neither on the batch nor on the sequence length;
    several rows per product read the weight once for all of them (faster than one product per row)."""
    if not getattr(layers._state, "batch_invariant", False):
        return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
    if not _invariant(x):
        return layers.linear(x, weight_t.t(), bias)
    n = x.shape[0]
    if n % CHUNK:
        x = F.pad(x, (0, 0, 0, CHUNK - n % CHUNK))
    if x.shape[0] == CHUNK:  # one chunk: the 2-D product (the batched one gives each chunk these bits: tested)
        y = torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
        return y if n == CHUNK else y[:n]
    chunks = x.view(-1, CHUNK, x.shape[1])
    w = weight_t.expand(chunks.shape[0], *weight_t.shape)
    y = torch.bmm(chunks, w) if bias is None else torch.baddbmm(bias, chunks, w)
    return y.view(-1, weight_t.shape[1])[:n]


def _t(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().t().contiguous()  # [in, out] in memory: ~10% faster products than the transposed view


class Layers:
    """The prior's inference weights, gathered once: per block (ln1, fused qkv, proj, ln2, mlp) with the linear
    weights as [in, out] copies; the query, key and value layers concatenated into one [C, 3C] product."""

    def __init__(self, prior: nn.Module) -> None:
        cfg = prior.config
        self.n_embd, self.heads, self.slots = cfg.n_embd, cfg.n_head, cfg.block_size
        self.scale = 1.0 / math.sqrt(cfg.n_embd // cfg.n_head)
        self.tok, self.pos = prior.tok_emb.weight, prior.pos_emb[0]
        self.ln_f, self.head_t = prior.ln_f, prior.head.weight.detach().t().contiguous()
        self.blocks = []
        with torch.no_grad():
            for b in prior.blocks:
                a = b.attn
                # the attention scale folded into the query's weights: scores need no multiply of their own
                wqkv = torch.cat([a.query.weight * self.scale, a.key.weight, a.value.weight]).t()
                bqkv = torch.cat([a.query.bias * self.scale, a.key.bias, a.value.bias])
                mlp1, mlp2 = b.mlp[0], b.mlp[2]
                self.blocks.append((b.ln1, wqkv.contiguous(), bqkv, _t(a.proj.weight), a.proj.bias, b.ln2,
                                    _t(mlp1.weight), mlp1.bias, _t(mlp2.weight), mlp2.bias))  # fmt: skip

    @staticmethod
    def of(prior: nn.Module) -> Layers:
        """The prior's Layers, rebuilt whenever one of its tensors changed (training, loading, a move)."""
        key = tuple((p._version, p.data_ptr(), p.dtype) for p in prior.parameters())
        cached = prior.__dict__.get("_inference_layers")
        if cached is None or cached[0] != key:
            cached = (key, Layers(prior))
            prior.__dict__["_inference_layers"] = cached  # not a registered module or buffer: never in a state dict
        return cached[1]


def _ln(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _attend(w: Layers, q: torch.Tensor, kv: torch.Tensor, pos: int) -> torch.Tensor:
    """One query position: q [N, C] (a view of the fused product, already scaled) over slots 0 .. pos of
    kv [2, N, heads, S, head_dim] -> [N, C]. One row per (image, head) against pos + 1 slots: the same product in
    the step and, position by position, in the forward (no mask: the slots after pos are not in it)."""
    n, c = q.shape
    keys = kv[0].view(n * w.heads, w.slots, -1)[:, : pos + 1]
    values = kv[1].view(n * w.heads, w.slots, -1)[:, : pos + 1]
    att = torch.bmm(q.reshape(n * w.heads, 1, -1), keys.transpose(1, 2))
    return torch.bmm(att.softmax(-1), values).view(n, c)


def _mlp_and_proj(block: tuple, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _, _, _, proj_t, proj_b, ln2, w1, b1, w2, b2 = block
    x = x + fixed_linear(y, proj_t, proj_b)
    return x + fixed_linear(F.gelu(fixed_linear(_ln(x, ln2), w1, b1)), w2, b2)


def step_logits(w: Layers, tokens: torch.Tensor, pos: int, cache_kv: torch.Tensor) -> torch.Tensor:
    """The next code's logits [N, num_codes] at position ``pos``; this position's keys and values are written into
    cache_kv [layers, 2, N, heads, S, head_dim] (``layer_major``) in place."""
    n, c = tokens.shape[0], w.n_embd
    x = F.embedding(tokens, w.tok) + w.pos[pos]
    for block, kv in zip(w.blocks, cache_kv):
        qkv = fixed_linear(_ln(x, block[0]), block[1], block[2])
        kv[:, :, :, pos] = qkv[:, c:].view(n, 2, w.heads, -1).transpose(0, 1)
        x = _mlp_and_proj(block, x, _attend(w, qkv[:, :c], kv, pos))
    return fixed_linear(_ln(x, w.ln_f), w.head_t)


def forward(prior: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The whole-sequence forward from the step's products: tokens [N, T] -> logits [N, T, num_codes] (keys and
    values padded to the block size, attention position by position)."""
    w = Layers.of(prior)
    n, length = tokens.shape
    c = w.n_embd
    x = (F.embedding(tokens, w.tok) + w.pos[:length]).reshape(n * length, c)
    kv = x.new_zeros(2, n, w.heads, w.slots, c // w.heads)
    for block in w.blocks:
        qkv = fixed_linear(_ln(x, block[0]), block[1], block[2]).view(n, length, 3 * c)
        kv[:, :, :, :length] = qkv[:, :, c:].reshape(n, length, 2, w.heads, -1).permute(2, 0, 3, 1, 4)
        y = torch.stack([_attend(w, qkv[:, i, :c], kv, i) for i in range(length)], dim=1)
        x = _mlp_and_proj(block, x, y.view(n * length, c))
    return fixed_linear(_ln(x, w.ln_f), w.head_t).view(n, length, -1)


def applies(prior: nn.Module) -> bool:
    """Inference: no autograd, no graph capture, no dropout at work."""
    return not torch.is_grad_enabled() and not layers._tracing() and not (prior.training and prior.config.dropout)


def layer_major(cache: torch.Tensor) -> torch.Tensor | None:
    """``empty_cache``'s layout seen as [layers, 2, N, heads, S, head_dim] (a view), or None for another layout."""
    if cache.dim() != 6:
        return None
    phys = cache.permute(1, 2, 0, 3, 4, 5)
    return phys if phys.is_contiguous() else None


def empty_cache(n: int, layers_: int, heads: int, slots: int, head_dim: int, like: torch.Tensor) -> torch.Tensor:
    """A zero cache [N, layers, 2, heads, slots, head_dim], laid out layer-major (``layer_major``)."""
    phys = torch.zeros([layers_, 2, n, heads, slots, head_dim], dtype=like.dtype, device=like.device)
    return phys.permute(2, 0, 1, 3, 4, 5)


def step(prior: nn.Module, tokens: torch.Tensor, pos: int, kv: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """``GPTPrior.step`` on the layer-major cache ``kv`` (a view of ``cache``): [N, num_codes + layers * 2 * n_embd]
    like the general step, the cache already written."""
    logits = step_logits(Layers.of(prior), tokens, pos, kv)
    return torch.cat([logits, cache[:, :, :, :, pos].reshape(tokens.shape[0], -1)], dim=1)
