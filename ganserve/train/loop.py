"""One training loop: phases with lazy regularisation, G EMA, resumable state, sample grids, shippable exports.

Every step reseeds from (seed, step), so a run is deterministic given --seed and a resumed run continues exactly
where the saved one stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganserve.checkpoint import CheckpointError, atomic_write, read_tensors, save_tensors
from ganserve.families import get_family
from ganserve.images import make_grid, to_pil
from ganserve.loading import save_generator
from ganserve.train.data import ImageDataset, check_resolution, load_dataset
from ganserve.train.stylegan2_loss import StyleGAN2Loss

STATE_FILE = "training-state.safetensors"


@dataclass
class TrainOptions:
    family: str = "stylegan2"
    data: str = "fashion-mnist"
    resolution: int = 32
    out_dir: str = "runs/stylegan2"
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = None  # None: StyleGAN2-ADA's heuristic 0.0002 * res^2 / batch
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float | None = None  # None: batch * 10 / 32
    ema_rampup: float | None = 0.05
    mirror: bool = False
    conditional: bool = False
    seed: int = 0
    snap: int = 500  # steps between grids, state saves and exports
    export: str | None = None  # write the EMA generator here at every snapshot
    export_dtype: str = "float16"
    model: dict[str, Any] = field(default_factory=dict)  # config overrides (z_dim, channel_base, ...)
    threads: int | None = None

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.batch_size < 1 or self.batch_size % 4:
            raise ValueError(
                f"--batch must be a positive multiple of 4 (minibatch-stddev groups), got {self.batch_size}"
            )
        self.betas = tuple(self.betas)


def _optimizer(module: torch.nn.Module, opts: TrainOptions, reg_interval: int) -> torch.optim.Adam:
    # Lazy regularisation runs the regulariser every k steps with k times the weight; scale lr and betas so the
    # optimiser's effective step matches running it every step (StyleGAN2, appendix B).
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(module.parameters(), lr=opts.lr * ratio, betas=[b**ratio for b in opts.betas], eps=1e-8)


def _optim_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{idx}.{k}"] = torch.as_tensor(v)
    return out


def _load_optim(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[key] = t
    sd["state"] = state
    opt.load_state_dict(sd)


def _module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class Trainer:
    def __init__(self, opts: TrainOptions, dataset: ImageDataset | None = None, command: str | None = None) -> None:
        self.opts = opts
        self.command = command or shlex.join(["ganserve", *sys.argv[1:]])
        self.out_dir = Path(opts.out_dir)
        self.data = dataset if dataset is not None else load_dataset(opts.data, opts.resolution)
        if opts.conditional and self.data.labels is None:
            raise ValueError(f"--cond needs labelled data; {opts.data} has no classes")
        fam = get_family(opts.family)
        cfg = dict(resolution=opts.resolution, img_channels=self.data.channels, **opts.model)
        if opts.conditional:
            cfg.update(c_dim=len(self.data.class_names), class_names=list(self.data.class_names))
        self.config = fam.make_config(cfg)
        torch.manual_seed(opts.seed)
        self.G = fam.make_generator(self.config).train()
        self.D = fam.make_discriminator(self.config).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = _optimizer(self.G, opts, opts.g_reg_interval)
        self.opt_D = _optimizer(self.D, opts, opts.d_reg_interval)
        gamma = opts.r1_gamma if opts.r1_gamma is not None else 0.0002 * opts.resolution**2 / opts.batch_size
        self.loss = StyleGAN2Loss(
            self.G, self.D, r1_gamma=gamma, style_mixing_prob=opts.style_mixing_prob, pl_weight=opts.pl_weight,
            pl_decay=opts.pl_decay,
        )  # fmt: skip
        self.step = 0
        self.log: dict[str, float] = {}

    # ---- state -------------------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    def save_state(self) -> None:
        tensors = {
            **_module_tensors("G", self.G),
            **_module_tensors("D", self.D),
            **_module_tensors("G_ema", self.G_ema),
            **_optim_tensors("opt_G", self.opt_G),
            **_optim_tensors("opt_D", self.opt_D),
            "loss.pl_mean": self.loss.pl_mean.reshape([]),
        }
        meta = {
            "family": self.opts.family,
            "kind": "training-state",
            "config": self.config.to_dict(),
            "options": dataclasses.asdict(self.opts),
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
        if meta["config"] != json.loads(json.dumps(self.config.to_dict())):
            raise CheckpointError(self.state_path, "its model config differs from this run's options")
        self.G.load_state_dict(_strip("G", tensors))
        self.D.load_state_dict(_strip("D", tensors))
        self.G_ema.load_state_dict(_strip("G_ema", tensors))
        _load_optim("opt_G", self.opt_G, tensors)
        _load_optim("opt_D", self.opt_D, tensors)
        self.loss.pl_mean = tensors["loss.pl_mean"].clone()
        self.step = int(meta["step"])
        return True

    def export(self, path: str | Path) -> None:
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

    def write_grid(self, path: Path, n: int = 64) -> None:
        from ganserve.sampling import sample

        result = sample(self.G_ema, seeds=list(range(n)), noise_mode="const")
        grid = make_grid(result.images, cols=int(math.sqrt(n)))
        atomic_write(path, lambda tmp: to_pil(grid).save(tmp, format="PNG"))

    # ---- one step ----------------------------------------------------------------------------------------------------
    def _batch(self, gen: torch.Generator):
        n, bs = len(self.data), self.opts.batch_size
        idx = torch.randint(0, n, [bs], generator=gen)
        flips = torch.rand([bs], generator=gen) < 0.5
        real = self.data.batch(idx, self.opts.mirror, flips)
        c_real = self.data.labels[idx] if self.opts.conditional else None
        c_fake = self.data.labels[torch.randint(0, n, [bs], generator=gen)] if self.opts.conditional else None
        return real, c_real, c_fake

    def train_step(self) -> dict[str, float]:
        o, step = self.opts, self.step
        stamp = o.seed * 1_000_003 + step
        torch.manual_seed(stamp)
        gen = torch.Generator().manual_seed(stamp)
        real, c_real, c_fake = self._batch(gen)
        z_dim = self.config.z_dim
        logs: dict[str, float] = {}

        # G main and (every g_reg_interval) path-length regularisation.
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        self.opt_G.zero_grad(set_to_none=True)
        loss = self.loss.g_main(torch.randn(o.batch_size, z_dim), c_fake)
        loss.backward()
        self.opt_G.step()
        logs["G"] = float(loss.detach())
        if o.pl_weight > 0 and step % o.g_reg_interval == 0:
            self.opt_G.zero_grad(set_to_none=True)
            pl = self.loss.g_pl(torch.randn(o.batch_size, z_dim), c_fake)
            (pl * o.g_reg_interval).backward()
            self.opt_G.step()
            logs["pl"] = float(pl.detach())

        # D main and (every d_reg_interval) R1.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        loss_fake, loss_real = self.loss.d_main(torch.randn(o.batch_size, z_dim), c_fake, real, c_real)
        (loss_fake + loss_real).backward()
        self.opt_D.step()
        logs["D"] = float((loss_fake + loss_real).detach())
        if self.loss.r1_gamma > 0 and step % o.d_reg_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            r1 = self.loss.d_r1(real, c_real)
            (r1 * o.d_reg_interval).backward()
            self.opt_D.step()
            logs["r1"] = float(r1.detach())

        self._update_ema()
        self.step += 1
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        o = self.opts
        ema_nimg = (o.ema_kimg if o.ema_kimg is not None else o.batch_size * 10 / 32) * 1000
        if o.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.step + 1) * o.batch_size * o.ema_rampup)
        beta = 0.5 ** (o.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- the loop ----------------------------------------------------------------------------------------------------
    def snapshot(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.save_state()
        self.write_grid(self.out_dir / f"samples-{self.step:06d}.png")
        if self.opts.export:
            self.export(self.opts.export)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "kimg": self.step * self.opts.batch_size / 1000, **self.log}) + "\n")

    def run(self, progress: bool = True) -> None:
        if self.opts.threads:
            torch.set_num_threads(self.opts.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.opts.steps, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)
        t0, n0 = time.perf_counter(), self.step
        while self.step < self.opts.steps:
            logs = self.train_step()
            self.log = {k: round(v, 4) for k, v in {**self.log, **logs}.items()}
            ips = (self.step - n0) * self.opts.batch_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in self.log.items()}, "img/s": f"{ips:.1f}"}, refresh=False)
            bar.update(1)
            if self.step % self.opts.snap == 0 or self.step == self.opts.steps:
                self.snapshot()
        bar.close()
