"""Parity: an exported graph against the eager module, on fresh random inputs at several batch sizes."""

from __future__ import annotations

import torch

from ganserve.export.registry import GraphSpec, Runner

PARITY_BATCHES = (1, 3, 8)
FP32_TOLERANCE = 1e-4
# fp16 graphs round weights and activations to 11 significant bits; the figure is reported, and only a gross
# error (a broken graph, not rounding) fails the export.
FP16_TOLERANCE = 5e-2


class ParityError(ValueError):
    """An exported graph disagrees with eager beyond the tolerance."""


@torch.no_grad()
def measure(
    spec: GraphSpec, runner: Runner, batches: tuple[int, ...] = PARITY_BATCHES, seed: int = 0
) -> dict[int, float]:
    """Max abs error of ``runner`` against the eager fp32 module, per batch size, on inputs drawn from ``seed``.

    The seed should differ from the one used to trace the graph so the check runs on inputs the export never saw.
    """
    gen = torch.Generator().manual_seed(seed)
    errors = {}
    for n in batches:
        inputs = spec.make_inputs(n, gen)
        expected = spec.module(*inputs).float()
        got = runner(*inputs).cpu()
        if got.shape != expected.shape:
            raise ParityError(f"{spec.name}: batch {n} gave shape {tuple(got.shape)}, eager {tuple(expected.shape)}")
        errors[n] = float((got - expected).abs().max())
    return errors


def check(spec: GraphSpec, errors: dict[int, float], fp16: bool) -> None:
    tol = FP16_TOLERANCE if fp16 and spec.half else FP32_TOLERANCE
    worst = max(errors.values())
    if not worst <= tol:  # also catches NaN
        raise ParityError(f"{spec.name}: max abs error {worst:.3g} vs eager exceeds {tol:g} (per batch: {errors})")
