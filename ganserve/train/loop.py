"""One training loop for every family: data, per-step seeding, G EMA, resumable state, sample grids, exports.

The family's training step (``Family.training``, see ``ganserve.train.step``) owns the optimisers, losses and their
extra state; the loop owns everything else. Every step reseeds from (seed, step), so a run is deterministic given
--seed and a resumed run continues bit-exactly where the saved one stopped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ganserve.checkpoint import CheckpointError, atomic_write, read_tensors, save_tensors
from ganserve.data import ImageDataset, check_resolution, load_dataset
from ganserve.families import get_family
from ganserve.images import make_grid, to_pil
from ganserve.loading import save_generator
from ganserve.train import distributed
from ganserve.train.step import Batch, TrainingStep, make_options

STATE_FILE = "training-state.safetensors"
GRID_COLS = 8  # seeds per row of a snapshot grid (a conditional model's grid has one row per class)
GRID_MAX_CLASSES = 32


@dataclass
class TrainOptions:
    """Settings every family shares; the family's own go in ``family_options`` (see its ``Options`` dataclass)."""

    family: str = "stylegan2"
    data: str = "fashion-mnist"
    resolution: int = 32
    out_dir: str = "runs/stylegan2"
    steps: int = 10_000
    batch_size: int = 32
    ema_kimg: float | None = None  # None: the family's default (StyleGAN2-ADA: batch * 10 / 32)
    ema_rampup: float | None = 0.05
    mirror: bool = False
    conditional: bool = False
    seed: int = 0
    snap: int = 500  # steps between grids, state saves and exports
    export: str | None = None  # write the EMA generator here at every snapshot
    export_dtype: str = "float16"
    model: dict[str, Any] = field(default_factory=dict)  # config overrides (z_dim, channel_base, ...)
    family_options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    device: str = "cpu"  # "cuda" trains on the GPU (under torchrun: one GPU per rank)
    amp: str | None = None  # "bf16": the training step under torch.autocast (mixed precision, no loss scaling)

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.batch_size < 1:
            raise ValueError(f"--batch must be positive, got {self.batch_size}")
        if self.steps < 0 or self.snap < 1:
            raise ValueError(f"--steps must be >= 0 and --snap >= 1, got {self.steps} and {self.snap}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"--amp must be bf16 (or omitted), got {self.amp!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available to this process")


def _module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class Trainer:
    def __init__(self, opts: TrainOptions, dataset: ImageDataset | None = None, command: str | None = None) -> None:
        self.opts = opts
        self.command = command or shlex.join(["ganserve", *sys.argv[1:]])
        self.out_dir = Path(opts.out_dir)
        fam = get_family(opts.family)
        step_cls: type[TrainingStep] = fam.training_class()
        self.device = torch.device(distributed.setup(opts.device))
        _, world = distributed.rank_world()
        if opts.batch_size % world:
            raise ValueError(f"--batch {opts.batch_size} must divide evenly over {world} processes")
        self.local_batch = opts.batch_size // world  # the global batch is sharded: one step equals one process's
        self.step_options = make_options(step_cls.Options, opts.family_options)
        self.step_options.check(self.local_batch, opts.resolution, opts.conditional)  # before the (slow) data load
        self.data = dataset if dataset is not None else load_dataset(opts.data, opts.resolution)
        if opts.conditional and self.data.labels is None:
            raise ValueError(f"--cond needs labelled data; {opts.data} has no classes")
        cfg = dict(resolution=opts.resolution, img_channels=self.data.channels, **opts.model)
        if opts.conditional:
            cfg.update(c_dim=len(self.data.class_names), class_names=list(self.data.class_names))
        self.config = fam.make_config(cfg)
        torch.manual_seed(opts.seed)
        self.G = fam.make_generator(self.config).train().to(self.device)
        self.D = fam.make_discriminator(self.config).train().to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.training = step_cls(self.G, self.D, self.step_options, batch_size=self.local_batch,
                                 resolution=opts.resolution)  # fmt: skip
        for name in self.training.optimizer_names:  # data parallel: average gradients before every update
            distributed.sync_optimizer(getattr(self.training, name))
        self.step = 0
        self.log: dict[str, float] = {}
        self._finalized_at: int | None = None
        self.images_per_second = 0.0

    # ---- state -------------------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    def save_state(self) -> None:
        tensors = {
            **_module_tensors("G", self.G),
            **_module_tensors("D", self.D),
            **_module_tensors("G_ema", self.G_ema),
            **self.training.state_tensors(),
        }
        meta = {
            "family": self.opts.family,
            "kind": "training-state",
            "config": self.config.to_dict(),
            "options": dataclasses.asdict(self.opts),
            "family_options": dataclasses.asdict(self.step_options),
            "step": self.step,
            "command": self.command,
        }
        save_tensors(self.state_path, tensors, meta)

    def resume(self) -> bool:
        """Load the run directory's state if there is one; returns whether it did."""
        if not self.state_path.exists():
            return False
        tensors, meta = read_tensors(self.state_path)
        if meta.get("kind") != "training-state":
            raise CheckpointError(self.state_path, "not a training state")
        if meta.get("family") != self.opts.family:
            raise CheckpointError(self.state_path, f"holds a {meta.get('family')} run, not {self.opts.family}")
        if meta["config"] != json.loads(json.dumps(self.config.to_dict())):
            raise CheckpointError(self.state_path, "its model config differs from this run's options")
        self.G.load_state_dict(_strip("G", tensors))
        self.D.load_state_dict(_strip("D", tensors))
        self.G_ema.load_state_dict(_strip("G_ema", tensors))
        self.training.load_state_tensors(tensors)
        self.step = int(meta["step"])
        self._finalized_at = self.step  # the saved G_ema was finished before it was saved
        return True

    def finalize_ema(self) -> None:
        """The family's finishing of the EMA generator (standing statistics ...), once per step reached."""
        if self._finalized_at != self.step:
            self.training.finalize(self.G_ema)
            self._finalized_at = self.step

    def export(self, path: str | Path) -> None:
        self.finalize_ema()
        save_generator(
            path,
            self.G_ema,
            dataset=self.data.name,
            training={
                "command": self.command,
                "step": self.step,
                "kimg": self.step * self.opts.batch_size / 1000,
                "batch_size": self.opts.batch_size,
                "seed": self.opts.seed,
            },
            dtype=getattr(torch, self.opts.export_dtype),
        )

    def grid_images(self, n: int = 64) -> tuple[np.ndarray, int]:
        """The snapshot grid through the sampling core: seeds 0..n-1 in a square, or for a class-conditional model
        one row per class with seeds 0..7 (the class-by-row figure)."""
        from ganserve.sampling import class_names, sample

        self.finalize_ema()
        names = class_names(self.G_ema)
        G = copy.deepcopy(self.G_ema).cpu()  # the grid is rendered on the CPU, as the shipped model will be
        if not names:
            return sample(G, seeds=list(range(n))).images, int(np.sqrt(n))
        seeds = list(range(GRID_COLS))
        rows = [sample(G, {"seeds": seeds, "class": k}).images for k in range(min(len(names), GRID_MAX_CLASSES))]
        return np.concatenate(rows), GRID_COLS

    def write_grid(self, path: Path, n: int = 64) -> None:
        images, cols = self.grid_images(n)
        grid = make_grid(images, cols=cols)
        atomic_write(path, lambda tmp: to_pil(grid).save(tmp, format="PNG"))

    # ---- one step ----------------------------------------------------------------------------------------------------
    def _batch(self, gen: torch.Generator) -> Batch:
        """The global batch from the step's generator (the same on every rank), then this rank's share."""
        n, bs = len(self.data), self.opts.batch_size
        idx = torch.randint(0, n, [bs], generator=gen)
        flips = torch.rand([bs], generator=gen) < 0.5
        real = self.data.batch(idx, self.opts.mirror, flips)
        c_real = self.data.labels[idx] if self.opts.conditional else None
        c_fake = self.data.labels[torch.randint(0, n, [bs], generator=gen)] if self.opts.conditional else None
        return Batch(*(None if t is None else distributed.shard(t).to(self.device) for t in (real, c_real, c_fake)))

    def train_step(self) -> dict[str, float]:
        step = self.step
        stamp = self.opts.seed * 1_000_003 + step
        torch.manual_seed(stamp)
        gen = torch.Generator().manual_seed(stamp)
        # Tensors the step creates (latents, noise) are made on the training device.
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.opts.amp else contextlib.nullcontext()
        on_device = torch.device(self.device) if self.device.type != "cpu" else contextlib.nullcontext()
        with on_device, amp:
            logs = self.training.train(step, lambda: self._batch(gen))
        distributed.average_buffers(self.G)  # running means (w_avg, BN statistics) as one process has them
        self._update_ema()
        self.step += 1
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        o = self.opts
        ema_kimg = o.ema_kimg if o.ema_kimg is not None else self.training.default_ema_kimg(o.batch_size)
        ema_nimg = ema_kimg * 1000
        if o.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.step + 1) * o.batch_size * o.ema_rampup)
        beta = 0.5 ** (o.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- the loop ----------------------------------------------------------------------------------------------------
    def snapshot(self) -> None:
        if not distributed.is_main():  # every rank holds the same weights: rank 0 writes
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.finalize_ema()
        self.save_state()
        self.write_grid(self.out_dir / f"samples-{self.step:06d}.png")
        if self.opts.export:
            self.export(self.opts.export)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(
                json.dumps(
                    {
                        "step": self.step,
                        "kimg": self.step * self.opts.batch_size / 1000,
                        **self.log,
                        "img_s": round(self.images_per_second, 2),
                        "time": time.time(),
                    }
                )
                + "\n"
            )

    def run(self, progress: bool = True) -> None:
        if self.opts.threads:
            torch.set_num_threads(self.opts.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        show = progress and distributed.is_main()
        bar = tqdm(total=self.opts.steps, initial=self.step, disable=not show, unit="step", dynamic_ncols=True)
        t0, n0 = time.perf_counter(), self.step
        while self.step < self.opts.steps:
            logs = self.train_step()
            self.log = {k: round(v, 4) for k, v in {**self.log, **logs}.items()}
            ips = (self.step - n0) * self.opts.batch_size / max(time.perf_counter() - t0, 1e-9)
            self.images_per_second = ips
            kimg = self.step * self.opts.batch_size / 1000
            stats = {"kimg": f"{kimg:.1f}", "s/kimg": f"{1000 / max(ips, 1e-9):.1f}"}
            bar.set_postfix({**stats, **{k: f"{v:.3f}" for k, v in self.log.items()}}, refresh=False)
            bar.update(1)
            if self.step % self.opts.snap == 0 or self.step == self.opts.steps:
                self.snapshot()
        bar.close()
