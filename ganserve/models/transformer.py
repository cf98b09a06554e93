"""A GPT prior over the code indices of a VQ first stage, and the sampling loop that runs it with a KV cache.

The sequence of a W x H code grid is [class token, code_0, ..., code_{HW-1}] in raster order; position t predicts
code_t. A class-conditional prior has one class token per class (vocabulary ids num_codes + class), an unconditional
one a single start token (num_codes). The head predicts codes only.

Names follow taming-transformers' minGPT (``taming/modules/transformer/mingpt.py``) so its GPT state dicts map 1:1:
``tok_emb``, ``pos_emb`` (a [1, block_size, n_embd] parameter), ``blocks.N.ln1/ln2``,
``blocks.N.attn.key/query/value/proj``, ``blocks.N.mlp.0`` and ``blocks.N.mlp.2`` (Linear, GELU, Linear), ``ln_f`` and
``head`` (no bias). Differences: our vocabulary puts the class tokens after the codes, the head has num_codes outputs,
and there is no ``attn.mask`` buffer (the causal mask is built on the fly).

Sampling (``sample_codes``) is a host loop over positions around one *step* function: step(tokens [N], pos [],
cache [N, layers, 2, heads, block_size, head_dim]) -> [N, num_codes + layers * 2 * n_embd] (the logits of the next
code, then this position's keys and values, which the loop writes into the cache). The eager prior and an exported
ONNX step graph both fit it, so both sample the same way. Every random decision comes from per-row uniforms drawn
from the row's seed beforehand (inverse-CDF sampling), and in batch-invariant mode every matrix product has a fixed
shape (``prior_inference``), so a row's codes never depend on the batch around it, and the KV-cache loop samples the
codes of the loop that re-runs the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models import layers, prior_inference
from ganserve.models.config import ModelConfig

MAX_CODES = 1 << 16
MAX_CLASSES = 1 << 14
MAX_TOKENS = 4096


class Linear(nn.Linear):
    """nn.Linear (same parameter names) that is batch-invariant in batch-invariant mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layers.linear(x, self.weight, self.bias)


@dataclass
class GPTPriorConfig(ModelConfig):
    num_codes: int = 512  # the first stage's codebook size
    code_height: int = 8
    code_width: int = 8
    c_dim: int = 0  # classes (0: unconditional)
    class_names: list[str] = field(default_factory=list)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # embedding, attention and residual dropout while training

    def __post_init__(self) -> None:
        self.check_ranges({
            "num_codes": (1, MAX_CODES), "code_height": (1, 256), "code_width": (1, 256), "c_dim": (0, MAX_CLASSES),
            "n_layer": (1, 128), "n_head": (1, 128), "n_embd": (1, 8192), "dropout": (0.0, 1.0),
        })  # fmt: skip
        if self.code_height * self.code_width + 1 > MAX_TOKENS:
            raise ValueError(f"a {self.code_height}x{self.code_width} code grid exceeds {MAX_TOKENS - 1} tokens")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        names = self.class_names
        if not isinstance(names, list) or any(not isinstance(n, str) or len(n) > 256 for n in names):
            raise ValueError("class_names must be a list of strings (at most 256 characters each)")
        if names and len(names) != self.c_dim:
            raise ValueError(f"{len(names)} class_names for c_dim {self.c_dim}")

    @property
    def block_size(self) -> int:
        return 1 + self.code_height * self.code_width

    @property
    def vocab_size(self) -> int:
        return self.num_codes + max(self.c_dim, 1)


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal (the prior) or not (ViT-VQGAN's encoder and decoder)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        self.n_head, self.causal = n_head, causal
        self.key = Linear(n_embd, n_embd)
        self.query = Linear(n_embd, n_embd)
        self.value = Linear(n_embd, n_embd)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)
        self.proj = Linear(n_embd, n_embd)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        n, length, c = t.shape
        return t.reshape(n, length, self.n_head, c // self.n_head).transpose(1, 2)  # [N, H, T, hd]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention over x [N, T, C] (each position sees those before it and itself when causal)."""
        n, length, c = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        if self.causal:
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf"))
        att = self.attn_drop(att.softmax(dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(n, length, c)
        return self.resid_drop(self.proj(y))

    def step(
        self, x: torch.Tensor, pos: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One position: x [N, 1, C]; past_k / past_v [N, H, T, hd] hold the keys and values of positions < pos
        (slots >= pos are ignored; eager, slot pos is overwritten with this position's). Returns (y [N, 1, C],
        k [N, H, 1, hd], v [N, H, 1, hd])."""
        n, _, c = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        slots = torch.arange(past_k.shape[2], device=x.device).reshape(1, 1, -1, 1)
        if torch.is_grad_enabled() or layers._tracing():  # autograd and graphs: select the new slot, no writes
            keys = torch.where(slots == pos, k, past_k)
            values = torch.where(slots == pos, v, past_v)
        else:  # inference: write this position into the caller's cache (slot pos is ignored on input)
            # Keys contiguous: q @ k^T on the strided cache view takes another GEMM path (other rounding), which moved
            # a sampled code against the whole-sequence loop; values give the same bits either way, so no copy.
            keys = past_k.index_copy_(2, pos.reshape(1), k.to(past_k.dtype)).to(k.dtype).contiguous()
            values = past_v.index_copy_(2, pos.reshape(1), v.to(past_v.dtype)).to(v.dtype)
        att = torch.matmul(q, keys.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # [N, H, 1, T]
        visible = slots.reshape(1, 1, 1, -1) <= pos
        att = att.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        y = torch.matmul(att, values).transpose(1, 2).reshape(n, 1, c)
        return self.proj(y), k, v


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)) (GELU, ``mlp_ratio`` x wider)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout, causal)
        self.mlp = nn.Sequential(
            Linear(n_embd, mlp_ratio * n_embd), nn.GELU(), Linear(mlp_ratio * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def step(self, x, pos, past_k, past_v):
        y, k, v = self.attn.step(self.ln1(x), pos, past_k, past_v)
        x = x + y
        return x + self.mlp(self.ln2(x)), k, v


class GPTPrior(nn.Module):
    """The prior: tokens [N, T] (class token first) -> next-code logits [N, T, num_codes]."""

    def __init__(self, config: GPTPriorConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.Sequential(*[Block(cfg.n_embd, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = Linear(cfg.n_embd, cfg.num_codes, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.data.normal_(0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.LayerNorm):
            m.bias.data.zero_()
            m.weight.data.fill_(1.0)

    # ---- sequences ---------------------------------------------------------------------------------------------------
    def start_tokens(self, classes: torch.Tensor | None, n: int | None = None) -> torch.Tensor:
        """The first token of each row: num_codes + class (or num_codes for an unconditional prior)."""
        if self.config.c_dim:
            if classes is None:
                raise ValueError("this prior is class-conditional: classes are required")
            return classes.long() + self.config.num_codes
        n = n if n is not None else (classes.shape[0] if classes is not None else 1)
        return torch.full([n], self.config.num_codes, dtype=torch.long, device=self.pos_emb.device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, T] (T <= block_size, start token first) -> logits [N, T, num_codes]."""
        length = tokens.shape[1]
        if length > self.config.block_size:
            raise ValueError(f"{length} tokens exceed the prior's block size {self.config.block_size}")
        if layers.batch_invariant_enabled() and prior_inference.applies(self):
            return prior_inference.forward(self, tokens)  # the KV-cache step's products: the same bits per token
        x = self.drop(self.tok_emb(tokens) + self.pos_emb[:, :length])
        x = self.ln_f(self.blocks(x))
        return self.head(x)

    def loss(self, codes: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-code cross entropy (nats) of codes [N, L] (raster order), given classes [N]."""
        n = codes.shape[0]
        tokens = torch.cat([self.start_tokens(classes, n)[:, None], codes[:, :-1]], dim=1)
        logits = self(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    # ---- one step with a KV cache ------------------------------------------------------------------------------------
    def empty_cache(self, n: int) -> torch.Tensor:
        """Zeros [N, layers, 2, heads, block_size, head_dim], stored [layers, N, heads, block_size, 2, head_dim] for the
        eager step (``prior_inference.cache_layout``); any layout of that shape is accepted by ``step``."""
        cfg = self.config
        return prior_inference.empty_cache(n, cfg.n_layer, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head,
                                           self.pos_emb)  # fmt: skip

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """tokens [N] at position ``pos`` (a 0-d int64 tensor), cache [N, layers, 2, heads, block_size, head_dim] with
        the keys/values of positions < pos -> [N, num_codes + layers * 2 * n_embd]: the next code's logits, then this
        position's keys and values per layer (to write into the cache at ``pos``). Exported as ONNX as is; eager
        inference on ``empty_cache``'s layout takes ``prior_inference.step`` (same logits, cache written in place)."""
        if prior_inference.applies(self):
            phys = prior_inference.cache_layout(cache)
            if phys is not None:
                return prior_inference.step(self, tokens, int(pos), phys, cache)
        n = tokens.shape[0]
        pos = pos.reshape([])
        x = self.tok_emb(tokens[:, None]) + self.pos_emb[0].index_select(0, pos.reshape(1))[None]
        new = []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, pos, cache[:, i, 0], cache[:, i, 1])
            new += [k.reshape(n, -1), v.reshape(n, -1)]
        logits = self.head(self.ln_f(x))[:, 0]
        return torch.cat([logits, *new], dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Sampling


StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def filter_sorted(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Temperature, top-k and top-p (nucleus) per row. logits [N, K]; temperature [N] > 0; top_k [N] (0: off);
    top_p [N] in (0, 1] (1: off).

    Returns (probs [N, K] in descending-logit order, order [N, K] the code of each sorted slot, kept [N] how many
    slots are allowed). Both filters keep a prefix of the stable descending order: top-k the first k slots exactly,
    top-p the fewest first slots whose probability (after temperature and top-k) reaches p.
    """
    scaled = logits.float() / temperature.float()[:, None]
    sorted_logits, order = scaled.sort(dim=1, descending=True, stable=True)
    num = logits.shape[1]
    slot = torch.arange(num, device=logits.device)[None]
    k = torch.where(top_k > 0, top_k.clamp(max=num), torch.full_like(top_k, num))
    keep = slot < k[:, None]
    probs = sorted_logits.masked_fill(~keep, float("-inf")).softmax(dim=1)
    before = probs.cumsum(dim=1) - probs  # mass of the slots ahead of each one
    keep = keep & (before < top_p.float()[:, None])
    keep[:, 0] = True
    probs = sorted_logits.masked_fill(~keep, float("-inf")).softmax(dim=1)
    return probs, order, keep.sum(dim=1)


def pick(probs: torch.Tensor, order: torch.Tensor, kept: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling in sorted order: the first slot whose cumulative probability exceeds u * total, never
    past the kept prefix. probs/order [N, K], kept [N], uniform [N] in [0, 1) -> codes [N]."""
    cdf = probs.cumsum(dim=1)
    target = uniform.to(cdf.dtype)[:, None] * cdf[:, -1:]
    slot = (cdf <= target).sum(dim=1).clamp(max=kept - 1)
    return order.gather(1, slot[:, None])[:, 0]


class DescendingSort:
    """``x.sort(dim=1, descending=True, stable=True)`` of x [N, K] (CPU, float32) for one sampling run: the same
    values, and each slot's index into x flattened (row * K + code), from a numpy sort ~3x faster than torch's stable
    sort at [8, 512] (the sort was ~11% of the prior's sampling at batch 8).

    Each entry is one int64 key: the order-preserving bits of -x above its flat index. The keys are distinct, so any
    sort gives the stable order; numpy sorts them in a buffer made once per shape."""

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray] | None:
        """(sorted values [N, K], flat indices [N, K] int32), or None when x holds a NaN (torch's order for it)."""
        a = x.detach().numpy()
        if a.size >= 1 << 31 or np.isnan(np.add.reduce(a, axis=None)):  # int32 indices; NaN: torch puts NaNs first
            return None
        if self.shape != a.shape:
            n, k = self.shape = a.shape
            self.flat = np.arange(n * k, dtype=np.int32).reshape(n, k)
            pairs = np.empty((n, k, 2), np.int32)  # the (low, high) halves of int64 keys on a little-endian CPU
            self.low, self.high, self.keys = pairs[..., 0], pairs[..., 1], pairs.view(np.int64)[..., 0]
        neg = np.float32(0.0) - a  # descending in x = ascending in -x; 0 - 0.0 and 0 - (-0.0) are both +0.0: a tie
        bits = neg.view(np.int32)
        np.bitwise_xor(bits, (bits >> 31) & 0x7FFFFFFF, out=self.high)  # float order as int order
        np.copyto(self.low, self.flat)  # ties (equal floats) in index order
        self.keys.sort(axis=1)
        return torch.from_numpy(a.ravel().take(self.low)), self.low


class Draw:
    """``pick(*filter_sorted(...))`` for one sampling run, the same codes bit for bit: the per-row constants are made
    once, and a filter that is off for every row (temperature 1, top-k 0) costs nothing per position. On the CPU the
    float work that decides the codes' bits (the softmaxes and cumulative sums) stays in torch; the sort, comparisons,
    counts and lookups, exact in any library, run in numpy (a torch call costs more than the work at [8, 512])."""

    def __init__(self, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, num: int) -> None:
        self.num = num
        self.temperature = None if bool((temperature == 1).all()) else temperature.float()[:, None]  # x / 1 == x
        k = torch.where(top_k > 0, top_k.clamp(max=num), torch.full_like(top_k, num))
        self.keep_k = None if bool((k >= num).all()) else torch.arange(num, device=top_k.device)[None] < k[:, None]
        self.top_p = top_p.float()[:, None]
        cpu = top_p.device.type == "cpu" and np.little_endian
        self.np_top_p = self.top_p.numpy() if cpu else None
        self.np_keep_k = None if self.keep_k is None or not cpu else self.keep_k.numpy()
        self.sort = DescendingSort()

    def __call__(self, logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        scaled = logits.float() if self.temperature is None else logits.float() / self.temperature
        got = self.sort(scaled) if self.np_top_p is not None and scaled.device.type == "cpu" else None
        if got is None:
            return self._torch(scaled, uniform)
        sorted_logits, flat = got
        keep_k = self.keep_k
        probs = (sorted_logits if keep_k is None else sorted_logits.masked_fill(~keep_k, float("-inf"))).softmax(1)
        cdf = probs.cumsum(dim=1)
        c = cdf.numpy()
        keep = (c - probs.numpy()) < self.np_top_p  # the mass ahead of each slot has not reached p yet
        if self.np_keep_k is None and keep.all():  # nothing filtered: the second softmax would repeat the first
            last = self.num - 1
        else:
            if self.np_keep_k is not None:
                keep &= self.np_keep_k
            keep[:, 0] = True
            c = torch.where(torch.from_numpy(keep), sorted_logits, float("-inf")).softmax(dim=1).cumsum(dim=1).numpy()
            last = np.count_nonzero(keep, axis=1) - 1
        u = uniform.float().numpy()
        slot = np.minimum(np.count_nonzero(c <= u[:, None] * c[:, -1:], axis=1), last)  # first cdf above u * total
        rows = np.arange(c.shape[0])
        return torch.from_numpy(flat[rows, slot] - rows * c.shape[1]).long()

    def _torch(self, scaled: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = scaled.sort(dim=1, descending=True, stable=True)
        keep_k = self.keep_k
        probs = (sorted_logits if keep_k is None else sorted_logits.masked_fill(~keep_k, float("-inf"))).softmax(1)
        cdf = probs.cumsum(dim=1)
        keep = (cdf - probs) < self.top_p
        if keep_k is None and bool(keep.all()):
            slot = (cdf <= uniform.to(cdf.dtype)[:, None] * cdf[:, -1:]).sum(dim=1).clamp(max=self.num - 1)
            return order.gather(1, slot[:, None])[:, 0]
        keep = keep if keep_k is None else keep & keep_k
        keep[:, 0] = True
        probs = torch.where(keep, sorted_logits, float("-inf")).softmax(dim=1)
        return pick(probs, order, keep.sum(dim=1), uniform)


@torch.no_grad()
def sample_codes(
    step: StepFn,
    cache: torch.Tensor,
    start: torch.Tensor,
    uniform: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    num_codes: int,
    keep_codes: torch.Tensor | None = None,
    keep_mask: torch.Tensor | None = None,
    prior: GPTPrior | None = None,
) -> torch.Tensor:
    """Autoregressive sampling with a KV cache: codes [N, L] in raster order.

    step: the prior's step function (eager ``GPTPrior.step`` or an exported graph); cache: an empty cache
    [N, layers, 2, heads, L + 1, head_dim]; start [N] start tokens; uniform [N, L] per-row randomness; the filters per
    row as in ``filter_sorted``. keep_codes / keep_mask [N, L]: positions whose code is given (partial re-sampling, a
    reconstruction) instead of sampled; the loop stops after the last position any row samples. prior: the eager
    prior whose step ``step`` is, if it is one: its logits then come straight from ``prior_inference`` (the same bits,
    the cache written once, in place).
    """
    n, length = uniform.shape
    if keep_mask is None:
        keep_mask = torch.zeros(n, length, dtype=torch.bool, device=uniform.device)
        keep_codes = torch.zeros(n, length, dtype=torch.long, device=uniform.device)
    codes = keep_codes.clone().long()
    kept_any, kept_all = keep_mask.any(dim=0).tolist(), keep_mask.all(dim=0).tolist()
    stop = max((t + 1 for t, kept in enumerate(kept_all) if not kept), default=0)
    kv = prior_inference.cache_layout(cache) if prior is not None and prior_inference.applies(prior) else None
    weights = prior_inference.Layers.of(prior) if kv is not None else None
    run = prior_inference.Run(weights, kv) if weights is not None else None
    draw = Draw(temperature, top_k, top_p, num_codes)
    layers_, heads, head_dim = cache.shape[1], cache.shape[3], cache.shape[5]
    tokens = start.long()
    # inference mode: ~15% less per call than no_grad at batch 8 (no version counters, no autograd keys); the loop
    # only writes tensors made outside it (cache, codes), so what it returns is an ordinary tensor
    with torch.inference_mode():
        for t in range(stop):
            if run is not None:
                logits = prior_inference.step_logits(weights, tokens, t, kv, run)
            else:
                out = step(tokens, torch.tensor(t, dtype=torch.long), cache)
                logits = out[:, :num_codes]
                cache[:, :, :, :, t] = out[:, num_codes:].reshape(n, layers_, 2, heads, head_dim).to(cache.dtype)
            if not kept_all[t]:
                chosen = draw(logits, uniform[:, t])
                codes[:, t] = torch.where(keep_mask[:, t], codes[:, t], chosen) if kept_any[t] else chosen
            tokens = codes[:, t]
    return codes


@torch.no_grad()
def sample_codes_uncached(
    prior: GPTPrior,
    start: torch.Tensor,
    uniform: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    keep_codes: torch.Tensor | None = None,
    keep_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same sampling without a cache: the whole sequence so far is run again at every position (the baseline the
    KV cache is measured against; gives the same codes)."""
    n, length = uniform.shape
    codes = torch.zeros(n, length, dtype=torch.long, device=uniform.device) if keep_codes is None else keep_codes.long()
    codes = codes.clone()
    tokens = start.long()[:, None]
    draw = Draw(temperature, top_k, top_p, prior.config.num_codes)
    for t in range(length):
        chosen = draw(prior(tokens)[:, -1], uniform[:, t])
        if keep_mask is not None:
            chosen = torch.where(keep_mask[:, t], codes[:, t], chosen)
        codes[:, t] = chosen
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    return codes


def uniforms_for_seed(seed: int, length: int) -> torch.Tensor:
    """The randomness of one image: ``length`` uniforms in [0, 1) from a generator seeded with the seed alone."""
    return torch.rand(length, generator=torch.Generator().manual_seed(seed))
