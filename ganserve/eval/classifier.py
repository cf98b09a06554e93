"""A small CNN trained here on a labelled real training set (Fashion-MNIST), used to check that a class-conditional
generator draws the class it is asked for: accuracy on generated samples of each class, reported beside the same
classifier's accuracy on the real test set (the ceiling the generator is measured against).

Weights are a ganserve-format safetensors file (``kind: classifier``, never listed as a model): tensors, plus JSON
metadata holding the config, the class names, the command that trained it and its real test accuracy. Loading checks
the content hash and every tensor's name and shape; nothing is unpickled.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganserve.checkpoint import CheckpointError, load_state_into, read_tensors, save_tensors
from ganserve.data import ImageDataset

KIND = "classifier"
DEFAULT_NAME = "classifier-fashion-32"


@dataclass
class ClassifierConfig:
    class_names: list[str]
    resolution: int = 32
    channels: int = 1
    width: int = 32  # channels of the first conv; doubled at each of the two later stages

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)  # no bias: batch norm follows
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages (5x5 then 3x3; width, 2x, 4x channels), each halving the size by max-pooling, then a
    256-unit hidden layer: 0.6 M parameters, about 10 M multiply-adds per 32 px image, so an epoch of Fashion-MNIST
    costs about a minute of one CPU core; ~92-93% on its real test set."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            _conv(config.channels, w, 5), nn.MaxPool2d(2),
            _conv(w, 2 * w), nn.MaxPool2d(2),
            _conv(2 * w, 4 * w), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = 4 * w * (config.resolution // 8) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(256, config.num_classes))  # fmt: skip

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, R, R] in [-1, 1] -> the 256-d penultimate activations."""
        return self.head[:4](self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def prepare(images: np.ndarray | torch.Tensor, config: ClassifierConfig) -> torch.Tensor:
    """uint8 [N, H, W, C] (any size, grey or RGB) -> float [N, channels, R, R] in [-1, 1], as the classifier was
    trained: grey by ITU-R 601 luma, then resized to its resolution (area when shrinking, bilinear when enlarging)."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).to(torch.float32)
    if x.shape[1] != config.channels:
        if config.channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
    r = config.resolution
    if x.shape[-2:] != (r, r):
        mode = "area" if x.shape[-1] > r else "bilinear"
        x = F.interpolate(x, size=(r, r), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x / 127.5 - 1


@torch.no_grad()
def predict(model: SmallCNN, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """Predicted class ids [N] for uint8 images [N, H, W, C]."""
    model.eval()
    out = [
        model(prepare(images[i : i + batch_size], model.config)).argmax(1) for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def accuracy_by_class(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, list[float | None]]:
    """Overall accuracy and per-class accuracy (None for a class with no samples)."""
    per = [float((pred[labels == c] == c).mean()) if (labels == c).any() else None for c in range(num_classes)]
    return float((pred == labels).mean()), per


# ---------------------------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainSettings:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-3  # one-cycle peak
    weight_decay: float = 5e-4
    width: int = 32
    seed: int = 0
    shift: int = 2  # random translation by up to this many pixels (zero padding), a standard MNIST-family augmentation
    flip: bool = True  # horizontal flips: Fashion-MNIST's classes are mirror-symmetric


@dataclass
class TrainResult:
    model: SmallCNN
    test_accuracy: float
    per_class_test_accuracy: list[float | None]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _augment(x: torch.Tensor, settings: TrainSettings, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    if settings.flip:
        flips = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flips.reshape(-1, 1, 1, 1), x.flip(3), x)
    s = settings.shift
    if s:
        r = x.shape[-1]
        padded = F.pad(x, [s, s, s, s], value=-1.0)  # the background is black (-1)
        dx, dy = torch.randint(0, 2 * s + 1, (2, n), generator=gen)
        rows = (dy[:, None] + torch.arange(r))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(r))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    return x


def train_classifier(
    train: ImageDataset, test: ImageDataset, settings: TrainSettings | None = None, progress: bool = True
) -> TrainResult:
    """Train on ``train`` (uint8 [N, C, R, R] with labels), report accuracy on ``test``. Deterministic for a seed."""
    if train.labels is None or test.labels is None:
        raise ValueError("the classifier needs labelled training and test data")
    from tqdm.auto import tqdm

    settings = settings or TrainSettings()
    t0 = time.perf_counter()
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    config = ClassifierConfig(list(train.class_names), train.images.shape[-1], train.channels, settings.width)
    model = SmallCNN(config)
    steps_per_epoch = (len(train) + settings.batch_size - 1) // settings.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.epochs * steps_per_epoch)
    test_x = test.images.permute(0, 2, 3, 1).numpy()
    history = []
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not progress,
                   leave=False)  # fmt: skip
        for i in bar:
            idx = order[i * settings.batch_size : (i + 1) * settings.batch_size]
            x = _augment(train.batch(idx), settings, gen)
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        acc, _ = accuracy_by_class(predict(model, test_x), test.labels.numpy(), config.num_classes)
        history.append({"epoch": epoch + 1, "loss": total / seen, "test_accuracy": acc})
        # one line per epoch even without bars: a CPU run takes minutes, its log should say how far it got
        print(f"epoch {epoch + 1}: loss {total / seen:.4f}, real test accuracy {acc:.4f}", file=sys.stderr, flush=True)
    acc, per = accuracy_by_class(predict(model, test_x), test.labels.numpy(), config.num_classes)
    return TrainResult(model.eval(), acc, per, history, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------------------
# Files


def save_classifier(path: str | Path, result: TrainResult, dataset: str, settings: TrainSettings,
                    command: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Write the weights and the model card (config, data set, command, settings, real test accuracy) atomically."""
    cfg = result.model.config
    meta = {
        "family": KIND,
        "kind": KIND,
        "config": asdict(cfg),
        "dataset": dataset,
        "training": {
            "command": command if command is not None else shlex.join(["ganserve", *sys.argv[1:]]),
            "settings": asdict(settings),
            "seconds": round(result.seconds, 1),
            "history": result.history,
        },
        "test_accuracy": result.test_accuracy,
        "per_class_test_accuracy": dict(zip(cfg.class_names, result.per_class_test_accuracy)),
    }
    return save_tensors(path, result.model.state_dict(), meta)


def load_classifier(path: str | Path) -> tuple[SmallCNN, dict[str, Any]]:
    """The classifier and its metadata; CheckpointError for a missing, corrupt or altered file, or another kind."""
    tensors, meta = read_tensors(path)
    if meta.get("kind") != KIND:
        raise CheckpointError(path, f"holds a {meta.get('kind', 'model')}, not a {KIND}")
    try:
        config = ClassifierConfig(**meta["config"])
        if config.num_classes < 2 or config.resolution < 8 or config.resolution % 8 or config.channels not in (1, 3):
            raise ValueError(f"implausible config {meta['config']}")
        model = SmallCNN(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(path, f"bad classifier config: {e}") from None
    load_state_into(path, model, tensors)
    return model.eval().requires_grad_(False), meta
