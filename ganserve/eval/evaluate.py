"""``evaluate``: generate N images from a model through the public sampling core, and measure them against real data.

Seeds are N consecutive integers from ``seed_offset``, so a result is reproducible from its record. A class-conditional
model draws its classes round-robin (seed offset + i gets class i mod C), which matches a balanced data set such as
Fashion-MNIST; the classifier check then sees about N / C samples per class.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ganserve.eval import metrics
from ganserve.eval.real_data import RealImages, dataset_name, real_images

REQUEST_CHUNK = 256  # seeds per sampling request (the core renders them in --batch-size chunks)


# Metrics on feature sets (real, generated) -> their entries in the result; a new one is one registered function.
FeatureMetric = Callable[[np.ndarray, np.ndarray, "EvalOptions"], dict[str, Any]]
FEATURE_METRICS: dict[str, FeatureMetric] = {}


def feature_metric(name: str) -> Callable[[FeatureMetric], FeatureMetric]:
    def register(fn: FeatureMetric) -> FeatureMetric:
        FEATURE_METRICS[name] = fn
        return fn

    return register


@feature_metric("fid")
def _fid(real: np.ndarray, fake: np.ndarray, opts: EvalOptions) -> dict[str, Any]:
    return {"fid": metrics.fid(real, fake)}


@feature_metric("kid")
def _kid(real: np.ndarray, fake: np.ndarray, opts: EvalOptions) -> dict[str, Any]:
    k = metrics.kid(real, fake, opts.kid_subsets, opts.kid_subset_size, seed=0)
    return {"kid": {"mean": k.mean, "std": k.std, "subsets": k.subsets, "subset_size": k.subset_size}}


@feature_metric("pr")
def _prdc(real: np.ndarray, fake: np.ndarray, opts: EvalOptions) -> dict[str, Any]:
    return metrics.prdc(real, fake, opts.k).to_dict()


METRICS = (*FEATURE_METRICS, "classifier")  # the classifier check reads generated images, not features


@dataclass
class EvalOptions:
    n: int = 2000
    metrics: tuple[str, ...] = METRICS
    truncation_psi: float | None = 1.0  # None: the family's default (leave the field out of the request)
    batch_size: int = 50  # generator and feature-extractor batch
    seed_offset: int = 0
    data: str | None = None  # reference data set; default: the one in the checkpoint's metadata
    split: str = "test"
    real_seed: int | None = None  # None: the first N real images; else a seeded subset
    k: int = 5  # neighbours for precision / recall / density / coverage
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    classifier: str | None = None  # path; default: the bundled classifier for the data set
    baseline: bool = False  # also measure N real *training* images against the same reference: the floor at this N
    device: str = "cpu"
    progress: bool = True
    cache: bool = True  # keep real images' features in the user cache (named data sets only; see real_features)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if self.n < self.k + 1 or self.n < 2:
            raise ValueError(f"--n must be at least {max(self.k + 1, 2)} (k-NN metrics use k = {self.k})")


@dataclass
class Generated:
    images: np.ndarray  # uint8 [N, H, W, C]
    classes: np.ndarray | None  # the class id asked for each image
    class_names: list[str] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)  # what every image shared (psi, noise mode ...)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


def generate(model: nn.Module, opts: EvalOptions) -> Generated:
    """N images from seeds ``seed_offset ..``, through ``ganserve.sampling.sample`` like every other front end."""
    from ganserve.families import family_of
    from ganserve.sampling import class_names, sample

    names = class_names(model)
    seeds = np.arange(opts.seed_offset, opts.seed_offset + opts.n)
    classes = np.arange(opts.n) % len(names) if names else None
    fields: dict[str, Any] = {}
    # psi goes to every family that has the field (each defines what it means); one without it has nothing to truncate
    if opts.truncation_psi is not None and "truncation_psi" in family_of(model).request.model_fields:
        fields["truncation_psi"] = opts.truncation_psi
    images = np.zeros((0,), np.uint8)
    params: dict[str, Any] = {}
    with _bar(opts.n, "generating", opts.progress) as bar:
        groups = (
            [(c, np.flatnonzero(classes == c)) for c in range(len(names))] if names else [(None, np.arange(opts.n))]
        )
        for c, rows in groups:
            for start in range(0, len(rows), REQUEST_CHUNK):
                chunk = rows[start : start + REQUEST_CHUNK]
                extra = {"class": int(c)} if c is not None else {}
                result = sample(model, seeds=[int(s) for s in seeds[chunk]], batch_size=opts.batch_size,
                                max_images=len(chunk), **fields, **extra)  # fmt: skip
                if images.ndim == 1:
                    images = np.zeros((opts.n, *result.images.shape[1:]), np.uint8)
                    params = {k: v for k, v in result.params[0].items() if k not in ("seeds", "class", "model")}
                images[chunk] = result.images
                bar.update(len(chunk))
    return Generated(images, classes, names, params)


def default_classifier(dataset: str | None) -> Path | None:
    """The bundled (or $GANSERVE_CHECKPOINTS) classifier for a data set, if one exists."""
    if dataset != "fashion-mnist":
        return None
    from ganserve.eval.classifier import DEFAULT_NAME
    from ganserve.loading import checkpoint_dirs

    for d in checkpoint_dirs():
        if (p := d / f"{DEFAULT_NAME}.safetensors").is_file():
            return p
    return None


def classifier_check(gen: Generated, opts: EvalOptions, dataset: str | None) -> dict[str, Any]:
    """Accuracy of the trained-here classifier on each class's generated samples, beside its real test accuracy."""
    if gen.classes is None:
        return {"skipped": "unconditional model: no class to check (the classifier metric needs a class-conditional "
                           "model)"}  # fmt: skip
    path = Path(opts.classifier) if opts.classifier else default_classifier(dataset)
    if path is None:
        return {"skipped": f"no classifier for data set '{dataset}' (give --classifier PATH)"}
    from ganserve.eval.classifier import accuracy_by_class, load_classifier, predict

    clf, meta = load_classifier(path)
    clf_names = [n.lower() for n in clf.config.class_names]
    try:  # model class -> classifier class, by name: ids need not agree
        mapping = np.array([clf_names.index(n.lower()) for n in gen.class_names])
    except ValueError:
        return {"skipped": f"the model's classes {gen.class_names} are not the classifier's {clf.config.class_names}"}
    target = mapping[gen.classes]
    pred = predict(clf, gen.images)
    mean, per_target = accuracy_by_class(pred, target, clf.config.num_classes)
    per = {name: per_target[mapping[c]] for c, name in enumerate(gen.class_names)}  # None: no sample of that class
    return {
        "accuracy": mean,
        "per_class": per,
        "real_test_accuracy": meta.get("test_accuracy"),
        "real_per_class_test_accuracy": meta.get("per_class_test_accuracy"),
        "classifier": path.name,
        "classifier_version": meta["content_hash"].split(":", 1)[1][:12],
    }


def feature_metrics(real: np.ndarray, fake: np.ndarray, opts: EvalOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in opts.metrics:
        if name in FEATURE_METRICS:
            out.update(FEATURE_METRICS[name](real, fake, opts))
    return out


def evaluate(model: nn.Module | None, opts: EvalOptions,
             extractor: Callable[..., np.ndarray] | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure ``model`` (or, with ``model=None``, only the real-data baseline of ``opts.data``); a JSON-able dict."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"n": opts.n, "seed_offset": opts.seed_offset}
    dataset = opts.data
    gen = None
    if model is not None:
        from ganserve.sampling import model_name, model_version

        info = getattr(model, "checkpoint_info", None) or {}
        dataset = dataset or dataset_name(info.get("dataset"))
        gen = generate(model, opts)
        result = {
            "model": model_name(model), "model_version": model_version(model), "family": model.family,
            **result, "seeds": f"{opts.seed_offset}-{opts.seed_offset + opts.n - 1}", **gen.request,
        }  # fmt: skip
        if gen.classes is not None:
            result["classes"] = "round-robin: seed offset+i gets class i mod C"
    elif not dataset:
        raise ValueError("give --model, or --data with --baseline for the real-data floor alone")
    feats_wanted = [m for m in opts.metrics if m in FEATURE_METRICS]
    if feats_wanted or model is None:
        if not dataset:
            raise ValueError("the checkpoint names no data set to compare with: give --data fashion-mnist|FOLDER")
        if gen is not None:
            _n, h, _w, c = gen.images.shape
        else:
            h, c = 32, 1  # a baseline alone: the data set at the bundled models' size
        real = real_images(dataset, opts.n, h, c, opts.split, opts.real_seed)
        result["reference"] = real.describe()
        if real.split == "all":
            result["reference"]["note"] = "no held-out split: measured against the training images themselves"
        if len(real.images) < opts.n:
            result["reference"]["note"] = f"only {len(real.images)} real images: the sets differ in size"
        if extractor is None:
            from ganserve.eval.features import InceptionFeatures

            extractor = InceptionFeatures(opts.device)
        result["features"] = getattr(extractor, "description", type(extractor).__name__)
        real_f = real_features(extractor, real, opts)
        if gen is not None:
            result.update(feature_metrics(real_f, _features(extractor, gen.images, opts, "features (generated)"),
                                          opts))  # fmt: skip
        if opts.baseline or model is None:
            result["baseline"] = _baseline(real, real_f, extractor, opts)
    if gen is not None and "classifier" in opts.metrics:
        result["classifier"] = classifier_check(gen, opts, dataset)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _features(extractor: Callable[..., np.ndarray], images: np.ndarray, opts: EvalOptions, desc: str) -> np.ndarray:
    with _bar(len(images), desc, opts.progress) as bar:
        return extractor(images, batch_size=opts.batch_size, progress=bar.update)


def cache_dir() -> Path:
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganserve" / "eval"


def real_features(extractor: Callable[..., np.ndarray], real: RealImages, opts: EvalOptions) -> np.ndarray:
    """Features of real images, cached per extractor, data set, split, size and selection: the reference side of a
    measurement never changes, and on a shared 2-core CPU it costs minutes per thousand images. Only named data sets
    (Debian's fixed Fashion-MNIST files) are cached; a folder's contents may change under the same path."""
    weights = getattr(extractor, "weights_sha1", None)
    if not (opts.cache and weights and real.dataset == "fashion-mnist"):
        return _features(extractor, real.images, opts, f"features (real {real.split})")
    import hashlib

    from safetensors import SafetensorError
    from safetensors.numpy import load_file, save_file

    from ganserve.checkpoint import atomic_write

    _n, h, _w, c = real.images.shape
    key = json.dumps([weights, opts.batch_size, real.dataset, real.split, real.selection, h, c])
    digest = hashlib.sha256(hashlib.sha256(real.images.tobytes()).hexdigest().encode() + key.encode()).hexdigest()
    path = cache_dir() / f"{real.dataset}-{real.split}-{len(real.images)}-{h}px-{digest[:16]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["features"].astype(np.float64)
        except (SafetensorError, OSError, KeyError):
            pass  # a damaged cache file is recomputed and replaced
    feats = _features(extractor, real.images, opts, f"features (real {real.split})")
    with contextlib.suppress(OSError):  # a read-only cache only costs recomputation
        atomic_write(path, lambda tmp: save_file({"features": feats.astype(np.float32)}, tmp, {"key": key}))
    return feats


def _baseline(ref: RealImages, ref_f: np.ndarray, extractor: Callable[..., np.ndarray],
              opts: EvalOptions) -> dict[str, Any]:  # fmt: skip
    """The same metrics for N real *training* images against the same reference: what a perfect generator would
    score at this sample count (FID and KID are biased upwards at small N, so a number means little without it)."""
    if ref.split != "test":
        return {"skipped": "no held-out split to compare real training images with"}
    _n, h, _w, c = ref.images.shape
    train = real_images(ref.dataset, len(ref.images), h, c, "train", opts.real_seed)
    out = {"images": train.describe()}
    out.update(feature_metrics(ref_f, real_features(extractor, train, opts), opts))
    return out
