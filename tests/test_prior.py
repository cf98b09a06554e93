"""The GPT prior and its sampling loop: the KV-cached step against the full forward, cached == uncached sampling,
top-k / top-p never emit excluded codes, kept codes survive exactly, and a row's codes do not depend on its batch."""

from __future__ import annotations

import pytest
import torch

from ganserve.models import prior_inference
from ganserve.models.layers import batch_invariant
from ganserve.models.transformer import (
    DescendingSort,
    Draw,
    GPTPrior,
    GPTPriorConfig,
    filter_sorted,
    pick,
    sample_codes,
    sample_codes_uncached,
    uniforms_for_seed,
)

K, H, W = 32, 3, 4


@pytest.fixture(scope="module")
def prior() -> GPTPrior:
    torch.manual_seed(0)
    p = GPTPrior(GPTPriorConfig(num_codes=K, code_height=H, code_width=W, c_dim=3, n_layer=2, n_head=2, n_embd=16))
    with torch.no_grad():
        for q in p.parameters():
            if q.ndim >= 2:
                q.normal_(0.0, 0.4)
    return p.eval()


def _rows(n: int, seeds=None, temperature=1.0, top_k=0, top_p=1.0):
    seeds = list(range(n)) if seeds is None else seeds
    return dict(
        uniform=torch.stack([uniforms_for_seed(s, H * W) for s in seeds]),
        temperature=torch.full([n], temperature),
        top_k=torch.full([n], top_k, dtype=torch.long),
        top_p=torch.full([n], top_p),
    )


def _sample(prior, classes, **kw):
    n = len(classes)
    r = _rows(n, **kw)
    start = prior.start_tokens(torch.tensor(classes), n)
    return sample_codes(prior.step, prior.empty_cache(n), start, r["uniform"], r["temperature"], r["top_k"],
                        r["top_p"], K)  # fmt: skip


def test_step_with_cache_gives_the_full_forward_logits(prior):
    n, length = 3, H * W + 1
    tokens = torch.cat([prior.start_tokens(torch.tensor([0, 1, 2]), n)[:, None], torch.randint(0, K, [n, H * W])], 1)
    full = prior(tokens)
    cache = prior.empty_cache(n)
    cache.normal_()  # stale slots must not matter
    cfg = prior.config
    for t in range(length):
        out = prior.step(tokens[:, t], torch.tensor(t), cache)
        torch.testing.assert_close(out[:, :K], full[:, t], atol=1e-5, rtol=1e-5)
        cache[:, :, :, :, t] = out[:, K:].reshape(n, cfg.n_layer, 2, cfg.n_head, -1)


@pytest.mark.parametrize("filters", [{}, {"top_k": 5}, {"top_p": 0.7}, {"temperature": 0.6, "top_k": 9, "top_p": 0.9}])
def test_cached_and_uncached_sampling_give_the_same_codes(prior, filters):
    classes = [0, 1, 2, 1, 0]
    cached = _sample(prior, classes, **filters)
    r = _rows(5, **filters)
    uncached = sample_codes_uncached(prior, prior.start_tokens(torch.tensor(classes), 5), r["uniform"],
                                     r["temperature"], r["top_k"], r["top_p"])  # fmt: skip
    assert torch.equal(cached, uncached)
    assert len({tuple(c.tolist()) for c in cached}) == 5


def test_codes_depend_on_the_seed_alone(prior):
    with batch_invariant():
        together = _sample(prior, [0, 1, 2, 1, 0, 2, 2], seeds=[5, 6, 7, 8, 9, 10, 11], top_k=7)
        for i, (c, s) in enumerate(zip([0, 1, 2, 1, 0, 2, 2], [5, 6, 7, 8, 9, 10, 11])):
            alone = _sample(prior, [c, c], seeds=[s, s], top_k=7)  # the core renders one row as a batch of two
            assert torch.equal(alone[0], together[i])
        reordered = _sample(prior, [2, 0, 1], seeds=[11, 9, 8], top_k=7)
        assert torch.equal(reordered, together[[6, 4, 3]])


def test_top_k_and_top_p_never_emit_excluded_codes():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 50, generator=gen) * 3
    uniform = torch.rand(400, generator=gen)
    uniform[:3] = torch.tensor([0.0, 0.999999, 1.0 - 2**-24])  # the ends of [0, 1)
    n = logits.shape[0]
    for k, p in [(1, 1.0), (3, 1.0), (50, 0.3), (0, 0.05), (10, 0.8)]:
        probs, order, kept = filter_sorted(logits, torch.ones(n), torch.full([n], k), torch.full([n], p))
        codes = pick(probs, order, kept, uniform)
        chosen = logits.gather(1, codes[:, None])
        ahead = logits > chosen  # the codes ranked above the chosen one
        if k:
            assert (ahead.sum(1) < k).all()
            kth = logits.sort(1, descending=True).values[:, k - 1 : k]
            probs_k = logits.masked_fill(logits < kth, -float("inf")).softmax(1)  # the nucleus is taken after top-k
        else:
            probs_k = logits.softmax(1)
        assert ((probs_k * ahead).sum(1) < p).all()  # the mass ranked above it has not reached p yet


def test_zero_temperature_limit_is_greedy():
    logits = torch.randn(20, 10)
    n = logits.shape[0]
    probs, order, kept = filter_sorted(logits, torch.full([n], 0.01), torch.zeros(n, dtype=torch.long), torch.ones(n))
    codes = pick(probs, order, kept, torch.rand(n) * 0.99)
    assert torch.equal(codes, logits.argmax(1))


def test_kept_codes_are_kept_exactly_and_the_rest_resampled(prior):
    n = 4
    r = _rows(n, top_k=4)
    source = torch.randint(0, K, [n, H * W], generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(n, H * W, dtype=torch.bool)
    mask[:, :W] = True  # the top row of the grid
    mask[1, -1] = True
    start = prior.start_tokens(torch.tensor([0, 1, 2, 0]), n)
    out = sample_codes(prior.step, prior.empty_cache(n), start, r["uniform"], r["temperature"], r["top_k"], r["top_p"],
                       K, source, mask)  # fmt: skip
    assert torch.equal(out[mask], source[mask])
    assert not torch.equal(out[~mask], source[~mask])
    full = sample_codes(prior.step, prior.empty_cache(n), start, r["uniform"], r["temperature"], r["top_k"],
                        r["top_p"], K, source, torch.ones_like(mask))  # fmt: skip
    assert torch.equal(full, source)  # everything kept: a reconstruction, the prior never runs


def test_loss_is_the_next_code_cross_entropy(prior):
    codes = torch.randint(0, K, [2, H * W])
    classes = torch.tensor([1, 2])
    logits = prior(torch.cat([prior.start_tokens(classes, 2)[:, None], codes[:, :-1]], 1))
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, K), codes.reshape(-1))
    torch.testing.assert_close(prior.loss(codes, classes), want)


def test_config_ranges_are_checked():
    for bad in (dict(num_codes=0), dict(n_embd=10, n_head=3), dict(code_height=100, code_width=100),
                dict(c_dim=2, class_names=["a"]), dict(n_layer=10**6)):  # fmt: skip
        with pytest.raises(ValueError):
            GPTPriorConfig(**bad)


# ---- issue 22: the inference path (ganserve.models.prior_inference) -------------------------------------------------


@pytest.fixture(scope="module")
def big_prior() -> GPTPrior:
    """The bundled priors' shape (512 codes, 8x8 grid, 128 wide, 4 heads), two layers, random weights."""
    torch.manual_seed(1)
    cfg = GPTPriorConfig(num_codes=512, code_height=8, code_width=8, c_dim=10, n_layer=2, n_head=4, n_embd=128)
    return GPTPrior(cfg).eval()


@pytest.mark.parametrize("n", [1, 5, 32])
def test_step_gives_the_whole_sequence_forward_bit_for_bit(big_prior, n):
    """In batch-invariant mode the KV-cache step and the whole-sequence forward use the same fixed-shape products, so
    every position's logits are identical bits (before issue 22's fix they differed by ~1e-5 at every position, and
    the KV-cache loop and the whole-sequence loop sampled a different code at batch 32)."""
    gen = torch.Generator().manual_seed(n)
    tokens = torch.cat(
        [big_prior.start_tokens(torch.arange(n) % 10)[:, None], torch.randint(0, 512, [n, 64], generator=gen)], 1
    )
    with batch_invariant(), torch.no_grad():
        full = big_prior(tokens)
        part = big_prior(tokens[:, :20])  # a shorter sequence: the same bits for its positions
        cache = big_prior.empty_cache(n)
        for t in range(65):
            out = big_prior.step(tokens[:, t], torch.tensor(t), cache)
            assert torch.equal(out[:, :512], full[:, t]), f"position {t}"
    assert torch.equal(part, full[:, :20])


def test_kv_cache_and_whole_sequence_loops_sample_the_same_codes_at_batch_32(big_prior):
    n = 32
    start = big_prior.start_tokens(torch.arange(n) % 10)
    u = torch.stack([uniforms_for_seed(s, 64) for s in range(n)])
    t, k, p = torch.ones(n), torch.zeros(n, dtype=torch.long), torch.ones(n)
    with batch_invariant():
        cached = sample_codes(big_prior.step, big_prior.empty_cache(n), start, u, t, k, p, 512, prior=big_prior)
        uncached = sample_codes_uncached(big_prior, start, u, t, k, p)
    assert torch.equal(cached, uncached)


def test_fixed_linear_gives_a_row_the_same_bits_in_any_batch():
    """One chunk (the 2-D product), padded chunks and many chunks (the batched product) agree row by row."""
    gen = torch.Generator().manual_seed(0)
    for fan_in, fan_out in [(128, 384), (512, 128), (128, 512)]:
        w_t = torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5
        b = torch.randn(fan_out, generator=gen)
        x = torch.randn(40, fan_in, generator=gen)
        with batch_invariant():
            alone = torch.cat([prior_inference.fixed_linear(x[i : i + 1], w_t, b) for i in range(40)])
            for rows in (2, 7, 8, 9, 16, 33, 40):
                got = prior_inference.fixed_linear(x[:rows], w_t, b)
                assert torch.equal(got, alone[:rows]), (fan_in, fan_out, rows)
            assert torch.equal(prior_inference.fixed_linear(x[3:11], w_t), prior_inference.fixed_linear(x, w_t)[3:11])
        torch.testing.assert_close(alone, torch.addmm(b, x, w_t), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("filters", [{}, {"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.6}, {"mixed": True}])
def test_draw_picks_the_codes_of_filter_sorted_and_pick(filters):
    gen = torch.Generator().manual_seed(3)
    n, num = 64, 512
    logits = torch.randn(n, num, generator=gen) * 4
    logits[0, :40] = logits[0, 40]  # ties: the stable order decides
    uniform = torch.rand(n, generator=gen)
    temperature = torch.full([n], filters.get("temperature", 1.0))
    top_k = torch.full([n], filters.get("top_k", 0), dtype=torch.long)
    top_p = torch.full([n], filters.get("top_p", 1.0))
    if "mixed" in filters:  # rows with different settings in one batch
        temperature[::3], top_k[1::4], top_p[2::5] = 1.3, 17, 0.8
    want = pick(*filter_sorted(logits, temperature, top_k, top_p), uniform)
    assert torch.equal(Draw(temperature, top_k, top_p, num)(logits, uniform), want)


def test_the_eager_loop_the_protocol_loop_and_any_cache_layout_agree(prior):
    n = 4
    r = _rows(n, top_k=6)
    start = prior.start_tokens(torch.tensor([0, 1, 2, 0]), n)
    args = (start, r["uniform"], r["temperature"], r["top_k"], r["top_p"], K)
    fast = sample_codes(prior.step, prior.empty_cache(n), *args, prior=prior)
    assert torch.equal(fast, sample_codes(prior.step, prior.empty_cache(n), *args))
    plain = torch.zeros(prior.empty_cache(n).shape)  # contiguous: the general step (no in-place layout)
    assert prior_inference.cache_layout(plain) is None
    assert torch.equal(fast, sample_codes(prior.step, plain, *args, prior=prior))


def test_the_gathered_weights_follow_the_parameters(big_prior):
    tokens = torch.full([2], 512, dtype=torch.long)
    with torch.no_grad():
        before = big_prior.step(tokens, torch.tensor(0), big_prior.empty_cache(2))[:, :512]
        old = big_prior.head.weight.clone()
        big_prior.head.weight.mul_(2.0)
        try:
            after = big_prior.step(tokens, torch.tensor(0), big_prior.empty_cache(2))[:, :512]
        finally:
            big_prior.head.weight.copy_(old)
    torch.testing.assert_close(after, before * 2.0)


def test_the_numpy_sort_is_torchs_stable_descending_sort():
    """Draw's CPU sort (one int64 key per entry) gives torch's values and order: ties in code order, -0.0 tying
    with 0.0, an infinity at its end; a NaN leaves it to torch. One sorter, several shapes (its buffers follow)."""
    gen = torch.Generator().manual_seed(4)
    sorter = DescendingSort()
    for trial in range(40):
        n, num = [(8, 512), (3, 40), (1, 7), (8, 512)][trial % 4]
        x = torch.randn(n, num, generator=gen) * 4
        if trial % 3 == 0:
            x = (x * 2).round() / 2  # many ties
        if trial % 5 == 0:
            x[0, ::3], x[0, 1::5] = 0.0, -0.0
            x[-1, :2] = float("inf") if trial % 10 else float("-inf")
        values, order = x.sort(dim=1, descending=True, stable=True)
        got, flat = sorter(x)
        assert torch.equal(got.view(torch.int32), values.view(torch.int32))  # the same bits (the sign of zeros too)
        assert torch.equal(torch.from_numpy(flat).long() - torch.arange(n)[:, None] * num, order)
    x[0, 0] = float("nan")
    assert sorter(x) is None
    x[0, 0], x[0, 1], x[1, 0] = 0.0, float("inf"), float("-inf")  # their sum is NaN: torch's sort too (still exact)
    assert sorter(x) is None


def test_the_eager_loop_returns_ordinary_tensors_and_leaves_inference_mode(prior):
    """The loop runs in inference mode but writes only tensors made outside it: its codes take in-place updates."""
    n = 3
    r = _rows(n)
    start = prior.start_tokens(torch.tensor([0, 1, 2]), n)
    codes = sample_codes(prior.step, prior.empty_cache(n), start, r["uniform"], r["temperature"], r["top_k"],
                         r["top_p"], K, prior=prior)  # fmt: skip
    assert not codes.is_inference() and not torch.is_inference_mode_enabled()
    codes.add_(0)
    assert prior_inference.cache_layout(prior.empty_cache(n)) is not None  # the fast path was the one taken
