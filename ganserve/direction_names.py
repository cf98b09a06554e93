"""Names for semantic directions, found by measurement: what an edit along a direction visibly changes.

For each direction the model renders a fixed set of seeds at -3 and +3 stds along it alone and measures plain image
descriptors at both ends: brightness, ink (the share of pixels that differ from the background), the ink's width and
height, and its left-right and up-down position; for a Fashion-MNIST model with the bundled classifier
(``ganserve.eval``) also the class the edit moves toward. The direction is named by the descriptor that changes most
("darker", "wider", "shift left", "toward Sneaker"), "direction K" when none changes clearly. Everything is fixed
(seeds, amounts, thresholds), so a model's names are the same on every run; they are stored with its directions
(``ganserve.directions``' cache, an export's manifest). A checkpoint may override them in its JSON metadata:
``"direction_names": {"sefa": ["smile", null, ...], "pca": [...]}`` (or one list for both methods; null or "" keeps
the measured name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

SEEDS = (0, 1, 2, 3)  # the images each direction is measured on
AMOUNT = 3.0  # the two ends, in stds along the direction
NAMED = 10  # directions named by measurement (the UI shows the first 10); later ones are "direction K"
MIN_CHANGE = 0.02  # a descriptor must move at least this much (in its [0, 1] units) to name the direction
MIN_CLASS_CHANGE = 0.2  # the class named must gain at least this much probability
INK_LEVEL = 0.25  # a pixel is ink when its grey level differs from the background's by more than this
VERSION = 1  # of the naming rules: cached names of another version are measured again

# descriptor -> (its name when the +end has more of it, when less)
DESCRIPTORS = {
    "brightness": ("brighter", "darker"),
    "ink": ("more ink", "less ink"),
    "width": ("wider", "narrower"),
    "height": ("taller", "shorter"),
    "x": ("shift right", "shift left"),
    "y": ("shift down", "shift up"),
}
Classify = Callable[[np.ndarray], tuple[np.ndarray, Sequence[str]]]  # uint8 images -> (probabilities [N, C], names)


def fallback(k: int) -> str:
    return f"direction {k}"


def _extent(mask: np.ndarray) -> np.ndarray:
    """[N, L] booleans -> the span from the first to the last True of each row (0 when none)."""
    any_ = mask.any(1)
    first = mask.argmax(1)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
    return np.where(any_, last - first + 1, 0)


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Each descriptor of uint8 images [N, H, W, C], one value per image in [0, 1]."""
    x = images.astype(np.float64) / 255.0
    grey = x[..., :3] @ np.array([0.299, 0.587, 0.114]) if x.shape[-1] >= 3 else x[..., 0]
    h, w = grey.shape[1:]
    border = np.concatenate([grey[:, 0], grey[:, -1], grey[:, :, 0], grey[:, :, -1]], axis=1)
    ink = np.abs(grey - np.median(border, axis=1)[:, None, None])  # how far from the background
    mask = ink > INK_LEVEL
    weight = ink.sum((1, 2)) + 1e-9
    ys, xs = np.mgrid[0:h, 0:w]
    return {
        "brightness": grey.mean((1, 2)),
        "ink": mask.mean((1, 2)),
        "width": _extent(mask.any(1)) / w,
        "height": _extent(mask.any(2)) / h,
        "x": (ink * xs).sum((1, 2)) / weight / max(w - 1, 1),
        "y": (ink * ys).sum((1, 2)) / weight / max(h - 1, 1),
    }


def name_from_ends(minus: np.ndarray, plus: np.ndarray, classify: Classify | None = None) -> str | None:
    """The name of a direction from its images at the -end and the +end (the same seeds, in order): the descriptor
    with the largest mean change, or the class gaining most probability when that gain is larger; None when nothing
    changes by MIN_CHANGE."""
    a, b = measure(minus), measure(plus)
    change = {k: float(np.mean(b[k] - a[k])) for k in DESCRIPTORS}
    key = max(change, key=lambda k: abs(change[k]))
    best, name = abs(change[key]), DESCRIPTORS[key][0 if change[key] > 0 else 1]
    if classify is not None:
        (pa, names), (pb, _) = classify(minus), classify(plus)
        gain = (pb - pa).mean(0)
        c = int(gain.argmax())
        if gain[c] >= MIN_CLASS_CHANGE and gain[c] >= best:
            best, name = float(gain[c]), f"toward {names[c]}"
    return name if best >= MIN_CHANGE else None


def unique(names: list[str]) -> list[str]:
    """A name already taken by a stronger direction gets the direction's number: "darker", "darker (4)"."""
    seen: set[str] = set()
    out = []
    for k, name in enumerate(names):
        out.append(name if name not in seen else f"{name} ({k})")
        seen.add(name)
    return out


def _classifier(model: nn.Module) -> Classify | None:
    """The bundled classifier for the model's data set (Fashion-MNIST), if there is one."""
    from ganserve.eval.evaluate import default_classifier

    dataset = (getattr(model, "checkpoint_info", None) or {}).get("dataset")
    path = default_classifier(dataset if isinstance(dataset, str) else None)
    if path is None:
        return None
    from ganserve.eval.classifier import load_classifier, prepare

    clf, _ = load_classifier(path)

    def classify(images: np.ndarray) -> tuple[np.ndarray, Sequence[str]]:
        with torch.no_grad():
            probs = clf(prepare(images, clf.config)).softmax(1).numpy()
        return probs, clf.config.class_names

    return classify


def measured(model: nn.Module, method: str, count: int) -> list[str]:
    """The names of ``model``'s ``count`` directions by ``method`` (the first NAMED measured). The directions must
    already be reachable through ``ganserve.surface.latent_directions`` (edits render them)."""
    from ganserve.sampling import plan, render

    classify = _classifier(model)
    measured_k = range(min(count, NAMED))
    edits = [{"direction": k, "amount": s * AMOUNT, "method": method} for k in measured_k for s in (-1.0, 1.0)]
    # A class-conditional model draws each seed in a class of its own (seed % classes), the same at both ends.
    c_dim = int(getattr(getattr(model, "config", None), "c_dim", 0) or 0)
    by_seed = [{"seeds": [s], "class": s % c_dim} for s in SEEDS] if c_dim else [{"seeds": list(SEEDS)}]
    # One render of every end (the sampler batches the plans): 2 x NAMED x len(SEEDS) images.
    rendered = render(model, [plan(model, **req, edits=[e]) for e in edits for req in by_seed])
    ends = [np.concatenate(rendered[i : i + len(by_seed)]) for i in range(0, len(rendered), len(by_seed))]
    names = [name_from_ends(ends[2 * k], ends[2 * k + 1], classify) for k in measured_k]
    return unique([(names[k] if k < len(names) else None) or fallback(k) for k in range(count)])


def overridden(names: list[str], info: dict[str, Any] | None, method: str) -> list[str]:
    """``names`` with the checkpoint metadata's ``direction_names`` for ``method`` put over them."""
    given: Any = (info or {}).get("direction_names")
    if isinstance(given, dict):
        given = given.get(method)
    if not isinstance(given, list):
        return names
    return [str(given[k]) if k < len(given) and given[k] not in (None, "") else n for k, n in enumerate(names)]
