"""The GPT prior's inference path (no autograd, no tracing): the sampling loop's step, and in batch-invariant mode the
whole-sequence forward, built from the same fixed-shape products so that both give a token the same bits.

Why fixed shapes: a BLAS picks its kernel by the shape of a product, and a row's bits change with it (one token at a
time against a whole sequence, one image against a batch). In batch-invariant mode every linear layer multiplies
exactly CHUNK rows (tokens, zero padded) at a time, and attention takes one query row per (image, head) against that
image's keys up to the query's position, in the step and in the forward alike (the forward repeats the step's product
per position). A token's bits then depend on nothing but its own inputs (tests/test_prior.py), and the KV-cache loop
samples exactly the codes of the loop that re-runs the whole sequence (issue 22: the two had drifted apart by ~1e-5 in
the logits at every position, and a code flipped at batch 32).

Speed (the step runs once per code, and at batch 8 a step is ~60 small calls, so the number of calls counts as much
as the arithmetic): the query, key and value layers are one product whose columns are ordered head by head, so each
(image, head)'s query, key and value are views of it with one stride (no reshaping copies); the attention scale and
causal mask cost nothing (the scale is folded into the query's weights, and a position's product covers only the
slots it sees); LayerNorm and GELU are called directly, the residual sums and GELU run in place, and the products
write into buffers made once per run (``Run``). The weights are gathered once (``Layers``), not looked up through
the modules at every position. The cache is ``GPTPrior.empty_cache``'s: the usual [N, layers, 2, heads, block_size,
head_dim] shape over a [layers, N, heads, block_size, 2, head_dim] storage, so a layer's keys and values are one
[N * heads, block_size, 2 * head_dim] block: one copy writes a position, and attention reads it in place.
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
    return layers.batch_invariant_enabled() and x.dtype == torch.float32 and x.device.type == "cpu"


def _mm(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
    return torch.mm(x, weight_t, out=out) if bias is None else torch.addmm(bias, x, weight_t, out=out)


def fixed_linear(
    x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x [R, in] @ weight_t [in, out] (+ bias), into ``out`` [R, out] when given (a buffer reused at every position:
    no allocation). In batch-invariant mode on the CPU in fp32 the rows go through products of exactly CHUNK rows
    (zero padded), so a row's result depends neither on the batch nor on the sequence length; several rows per
    product read the weight once for all of them (faster than one product per row)."""
    if not layers.batch_invariant_enabled():
        return _mm(x, weight_t, bias, out)
    n = x.shape[0]
    if n == CHUNK and _invariant(x):  # one chunk: the 2-D product (the batched one gives each chunk these bits: tested)
        return _mm(x, weight_t, bias, out)
    if not _invariant(x):
        y = layers.linear(x, weight_t.t(), bias)
    else:
        if n % CHUNK:
            x = F.pad(x, (0, 0, 0, CHUNK - n % CHUNK))
        if x.shape[0] == CHUNK:
            y = _mm(x, weight_t, bias, None)[:n]
        else:
            chunks = x.view(-1, CHUNK, x.shape[1])
            w = weight_t.expand(chunks.shape[0], *weight_t.shape)
            y = torch.bmm(chunks, w) if bias is None else torch.baddbmm(bias, chunks, w)
            y = y.view(-1, weight_t.shape[1])[:n]
    return y if out is None else out.copy_(y)


def _norm(ln: nn.LayerNorm) -> tuple:
    """A LayerNorm's arguments for torch.layer_norm (the kernel F.layer_norm calls, without the module lookups)."""
    return ln.normalized_shape, _detach(ln.weight), _detach(ln.bias), ln.eps


def _detach(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _t(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().t().contiguous()  # [in, out] in memory: ~10% faster products than the transposed view


class Layers:
    """The prior's inference weights, gathered once: per block (ln1, fused qkv, proj, ln2, mlp) with the linear
    weights as [in, out] copies. The query, key and value layers are one [C, 3C] product, its columns ordered head by
    head (each head's query, key, value), so row n's head h is columns 3 * head_dim * h onwards."""

    def __init__(self, prior: nn.Module) -> None:
        cfg = prior.config
        self.n_embd, self.heads, self.slots = cfg.n_embd, cfg.n_head, cfg.block_size
        self.head_dim = d = cfg.n_embd // cfg.n_head
        self.scale = 1.0 / math.sqrt(d)
        self.tok, self.pos = prior.tok_emb.weight.detach(), prior.pos_emb[0].detach()
        self.ln_f, self.head_t = _norm(prior.ln_f), prior.head.weight.detach().t().contiguous()
        self.blocks = []
        c, h = cfg.n_embd, cfg.n_head
        with torch.no_grad():
            for b in prior.blocks:
                a = b.attn
                # the attention scale folded into the query's weights: scores need no multiply of their own
                wqkv = torch.cat([a.query.weight * self.scale, a.key.weight, a.value.weight])  # rows (q|k|v, head, d)
                bqkv = torch.cat([a.query.bias * self.scale, a.key.bias, a.value.bias])
                wqkv = wqkv.view(3, h, d, c).transpose(0, 1).reshape(3 * c, c)  # rows (head, q|k|v, d)
                bqkv = bqkv.view(3, h, d).transpose(0, 1).reshape(3 * c)
                m1, m2 = b.mlp[0], b.mlp[2]
                attn = (_norm(b.ln1), _t(wqkv), bqkv, _t(a.proj.weight), _detach(a.proj.bias))
                mlp = (_norm(b.ln2), _t(m1.weight), _detach(m1.bias), _t(m2.weight), _detach(m2.bias))
                self.blocks.append(attn + mlp)

    @staticmethod
    def of(prior: nn.Module) -> Layers:
        """The prior's Layers, rebuilt whenever one of its tensors changed (training, loading, a move)."""
        key = tuple((p._version, p.data_ptr(), p.dtype) for p in prior.parameters())
        cached = prior.__dict__.get("_inference_layers")
        if cached is None or cached[0] != key:
            cached = (key, Layers(prior))
            prior.__dict__["_inference_layers"] = cached  # not a registered module or buffer: never in a state dict
        return cached[1]


class Run:
    """One sampling run's state around ``cache_layout``'s storage [layers, N, heads, S, 2, head_dim]: per layer the
    [N * heads, S, 2 * head_dim] slots with their keys (transposed) and values as views, and buffers for the step's
    products, reused at every position (one run, one thread: concurrent runs never share them)."""

    def __init__(self, w: Layers, phys: torch.Tensor) -> None:
        n, d = phys.shape[1], w.head_dim
        self.w, self.n = w, n
        self.direct = _direct(phys, n)
        self.layers = []
        for block, layer in zip(w.blocks, phys.unbind(0)):
            slots = layer.view(n * w.heads, w.slots, 2 * d)
            self.layers.append((block, slots, slots[:, :, :d].transpose(1, 2), slots[:, :, d:]))
        hidden = w.blocks[0][6].shape[1] if w.blocks else w.n_embd
        self.qkv, self.proj = phys.new_empty(n, 3 * w.n_embd), phys.new_empty(n, w.n_embd)
        self.hidden, self.out = phys.new_empty(n, hidden), phys.new_empty(n, w.n_embd)
        rows = self.qkv.view(n * w.heads, 3 * d)  # one row per (image, head): query | key | value
        self.q, self.kv = rows[:, None, :d], rows[:, d:]


def _direct(x: torch.Tensor, n: int) -> bool:
    """Whether the step's products are plain 2-D products (no padding, no chunks) in the current mode."""
    return not layers.batch_invariant_enabled() or (n == CHUNK and _invariant(x))


def _ln(x: torch.Tensor, ln: tuple) -> torch.Tensor:
    return torch.layer_norm(x, *ln)


def _attend(q: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor, pos: int) -> torch.Tensor:
    """One query position: q [N * heads, 1, head_dim] (already scaled) over slots 0 .. pos of keys_t [N * heads,
    head_dim, S] and values [N * heads, S, head_dim] -> [N * heads, 1, head_dim]. The same product in the step and,
    position by position, in the forward (no mask: the slots after pos are not in it)."""
    att = torch.bmm(q, keys_t[:, :, : pos + 1]).softmax(-1)
    return torch.bmm(att, values[:, : pos + 1])


def _mlp_and_proj(block: tuple, x: torch.Tensor, y: torch.Tensor, run: Run | None = None) -> torch.Tensor:
    """x + proj(y), then + mlp(ln2(x)): the residual sums in place on x (the caller's own tensor), GELU in place."""
    _, _, _, proj_t, proj_b, ln2, w1, b1, w2, b2 = block
    if run is not None and run.direct:  # the step: the plain products into the run's buffers
        x.add_(torch.addmm(proj_b, y, proj_t, out=run.proj))
        hidden = torch._C._nn.gelu_(torch.addmm(b1, _ln(x, ln2), w1, out=run.hidden))
        return x.add_(torch.addmm(b2, hidden, w2, out=run.out))
    x.add_(fixed_linear(y, proj_t, proj_b))
    return x.add_(fixed_linear(torch._C._nn.gelu_(fixed_linear(_ln(x, ln2), w1, b1)), w2, b2))


def step_logits(w: Layers, tokens: torch.Tensor, pos: int, phys: torch.Tensor, run: Run | None = None) -> torch.Tensor:
    """The next code's logits [N, num_codes] at position ``pos``; this position's keys and values are written into
    phys [layers, N, heads, S, 2, head_dim] (``cache_layout``) in place. run: the sampling run's ``Run`` (made here
    when not given)."""
    run = run if run is not None else Run(w, phys)
    n, c, d = tokens.shape[0], w.n_embd, w.head_dim
    x = F.embedding(tokens, w.tok).add_(w.pos[pos])
    for block, slots, keys_t, values in run.layers:
        if run.direct:  # the product lands in the run's buffer, whose query and key | value views are made once
            torch.addmm(block[2], _ln(x, block[0]), block[1], out=run.qkv)
            q, kv = run.q, run.kv
        else:
            rows = fixed_linear(_ln(x, block[0]), block[1], block[2]).view(n * w.heads, 3 * d)
            q, kv = rows[:, None, :d], rows[:, d:]
        slots.select(1, pos).copy_(kv)
        x = _mlp_and_proj(block, x, _attend(q, keys_t, values, pos).view(n, c), run)
    h = _ln(x, w.ln_f)
    return torch.mm(h, w.head_t) if run.direct else fixed_linear(h, w.head_t)


def forward(prior: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The whole-sequence forward from the step's products: tokens [N, T] -> logits [N, T, num_codes] (keys and
    values in a one-layer cache of the step's layout, attention position by position on the step's views)."""
    w = Layers.of(prior)
    n, length = tokens.shape
    c, d, nh = w.n_embd, w.head_dim, n * w.heads
    x = (F.embedding(tokens, w.tok) + w.pos[:length]).reshape(n * length, c)
    slots = x.new_zeros(n, w.heads, w.slots, 2 * d)
    keys_t, values = slots.view(nh, w.slots, 2 * d)[:, :, :d].transpose(1, 2), slots.view(nh, w.slots, 2 * d)[:, :, d:]
    q = x.new_empty(n, 3 * c)  # a position's rows laid out as the step's product is (the same strides, the same bits)
    for block in w.blocks:
        qkv = fixed_linear(_ln(x, block[0]), block[1], block[2]).view(n, length, w.heads, 3 * d)
        slots[:, :, :length] = qkv[..., d:].transpose(1, 2)
        ys = []
        for i in range(length):
            q.copy_(qkv[:, i].reshape(n, 3 * c))
            ys.append(_attend(q.view(nh, 3 * d)[:, None, :d], keys_t, values, i).view(n, c))
        x = _mlp_and_proj(block, x, torch.stack(ys, dim=1).view(n * length, c))
    return fixed_linear(_ln(x, w.ln_f), w.head_t).view(n, length, -1)


def applies(prior: nn.Module) -> bool:
    """Inference: no autograd, no graph capture, no dropout at work."""
    return not torch.is_grad_enabled() and not layers._tracing() and not (prior.training and prior.config.dropout)


def cache_layout(cache: torch.Tensor) -> torch.Tensor | None:
    """``empty_cache``'s [N, layers, 2, heads, S, head_dim] seen as its storage [layers, N, heads, S, 2, head_dim]
    (a view), or None for another layout."""
    if cache.dim() != 6:
        return None
    phys = cache.permute(1, 0, 3, 4, 2, 5)
    return phys if phys.is_contiguous() else None


def empty_cache(n: int, layers_: int, heads: int, slots: int, head_dim: int, like: torch.Tensor) -> torch.Tensor:
    """A zero cache [N, layers, 2, heads, slots, head_dim] over a [layers, N, heads, slots, 2, head_dim] storage
    (``cache_layout``)."""
    phys = torch.zeros([layers_, n, heads, slots, 2, head_dim], dtype=like.dtype, device=like.device)
    return phys.permute(1, 0, 4, 2, 3, 5)


def step(prior: nn.Module, tokens: torch.Tensor, pos: int, phys: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """``GPTPrior.step`` on ``empty_cache``'s layout (``phys`` = ``cache_layout(cache)``): [N, num_codes + layers * 2 *
    n_embd] like the general step, the cache already written."""
    logits = step_logits(Layers.of(prior), tokens, pos, phys)
    return torch.cat([logits, cache[:, :, :, :, pos].reshape(tokens.shape[0], -1)], dim=1)
