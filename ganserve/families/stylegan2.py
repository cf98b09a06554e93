"""StyleGAN2 as a ganserve family: its request fields and its sampler (mapping -> ws rows -> synthesis).

Semantics are StyleGAN2-ADA's: z = RandomState(seed).randn(z_dim); truncation lerps from w_avg on the first
``truncation_cutoff`` ws; style mixing copies a mixing seed's ws over a layer range (inclusive, as the official
``--styles 0-6``) or a named group; interpolation lerps in W or slerps in Z. Noise always travels as explicit rows
(const and none become tensors) so requests with different noise modes share one generator call.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from pydantic import Field, PrivateAttr, field_validator, model_validator
from torch import nn

from ganserve import directions, fields, jobs, latents_store
from ganserve.families import Family, Part, Sampler
from ganserve.images import MAX_IMAGE_BYTES, ImageDecodeError, decode_image
from ganserve.latents import normal_from_seed, slerp, steps
from ganserve.requests import ClassField, Edit, LatentRequest, RequestError, StyleMix, finite_float, layer_groups
from ganserve.sampling import Plan, model_device, model_name, resolve_class
from ganserve.surface import StyleModel, latent_directions, require_gradients


class StyleRequest(LatentRequest, ClassField):
    """Requests for the style-based generators (StyleGAN, StyleGAN2)."""

    truncation_psi: fields.TruncationPsi = finite_float(-1.0, 2.0, 1.0)
    truncation_cutoff: fields.TruncationCutoff = None
    noise_mode: fields.NoiseMode = "const"
    style_mix: fields.StyleMixing[StyleMix] = None
    edits: fields.Edits[Edit] = None
    # Latents instead of seeds: a projected w (an id or a base64 .npy of [num_ws, w_dim], [w_dim] or N of those),
    # or an image to project (base64 PNG/JPEG) whose w then makes the picture.
    w: fields.LatentW = Field(default=None, max_length=latents_store.MAX_NPY_BYTES * 4 // 3 + 4)
    project: fields.ProjectImage = Field(default=None, max_length=MAX_IMAGE_BYTES * 4 // 3 + 4)
    project_steps: fields.ProjectSteps = 300

    _w: np.ndarray | None = PrivateAttr(default=None)

    @field_validator("w")
    @classmethod
    def _check_w(cls, v: str | None) -> str | None:
        if v is not None:
            w = latents_store.resolve(v)  # ValueError -> a RequestError naming "w"
            if w.ndim not in (1, 2, 3):
                raise ValueError(f"must be [w_dim], [num_ws, w_dim] or [N, num_ws, w_dim], got shape {w.shape}")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> StyleRequest:
        if self.style_mix is not None and self.interpolate is not None:
            raise ValueError("style_mix and interpolate cannot be combined in one request")
        given = self.model_fields_set
        if self.w is not None and self.project is not None:
            raise ValueError("give w or project, not both")
        if (self.w is not None or self.project is not None) and "seeds" in given:
            raise ValueError("give seeds, w or project: each is a source of latents")
        if "project_steps" in given and self.project is None:
            raise ValueError("project_steps needs project")
        return self

    def latents(self) -> np.ndarray | None:
        """The ``w`` field as an array [N, num_ws or 1, w_dim] (None without a w)."""
        if self.w is None:
            return None
        if self._w is None:
            w = latents_store.resolve(self.w)
            self._w = w.reshape(1, 1, -1) if w.ndim == 1 else (w[None] if w.ndim == 2 else w)
        return self._w

    def source_count(self) -> int:
        """How many latents the request starts from: seeds, the rows of w, or one projected image."""
        if self.w is not None:
            return self.latents().shape[0]
        return 1 if self.project is not None else len(self.seeds)

    def job_steps(self) -> int:
        return self.project_steps if self.project is not None else 0

    def image_count(self) -> int:
        per_source = (self.interpolate.steps if self.interpolate else 1) * (
            len(self.style_mix.seeds) if self.style_mix else 1
        )
        return self.source_count() * per_source

    def default_cols(self) -> int:
        return len(self.style_mix.seeds) if self.style_mix else super().default_cols()


def layer_span(layers: list[int] | str, num_ws: int, field_name: str) -> tuple[int, int]:
    """A request's layers (group name or inclusive [A, B]) -> the [start, stop) slice of ws they cover."""
    if isinstance(layers, str):
        groups = layer_groups(num_ws)
        if layers not in groups:
            raise RequestError(field_name, f"'{layers}' holds no layers in a model with {num_ws} ws "
                                           f"(groups: {', '.join(groups)})")  # fmt: skip
        lo, hi = groups[layers]
        return lo, hi + 1
    lo, hi = layers
    if hi >= num_ws:
        raise RequestError(field_name, f"layer range [{lo}, {hi}] exceeds the model's ws 0-{num_ws - 1}")
    return lo, hi + 1


def layers_param(layers: list[int] | str) -> str:
    """How a layer choice is recorded in image parameters: the group name, or "A-B" (inclusive).

    Older files recorded [start, stop) lists; a string is never that, so restoring can tell the two apart.
    """
    return layers if isinstance(layers, str) else f"{layers[0]}-{layers[1]}"


class StyleSampler(Sampler):
    """mapping(z, class, psi, cutoff) -> ws rows (+ per-layer noise rows) -> synthesis."""

    surface = StyleModel

    def noise_layers(self, model: nn.Module) -> list[Any]:
        return [m for m in model.synthesis.modules() if hasattr(m, "noise_const")]

    def plan(self, model: nn.Module, req: StyleRequest) -> Plan:
        num_ws, z_dim = model.num_ws, model.config.z_dim
        if req.truncation_cutoff is not None and req.truncation_cutoff > num_ws:
            raise RequestError("truncation_cutoff", f"{req.truncation_cutoff} exceeds the model's {num_ws} ws")
        if req.project is not None:
            require_gradients(model, "project")
        cls = resolve_class(model, req.class_)
        mix_span = layer_span(req.style_mix.layers, num_ws, "style_mix.layers") if req.style_mix else None
        device = model_device(model)

        base: dict[str, Any] = {"model": model_name(model), "truncation_psi": req.truncation_psi,
                                "noise_mode": req.noise_mode}  # fmt: skip
        if req.truncation_cutoff is not None:
            base["truncation_cutoff"] = req.truncation_cutoff
        if cls is not None:
            base["class"] = cls
        # Edits resolved before any work; amount 0 adds nothing, so it is the unedited image exactly.
        shifts = [self._edit_shift(model, e, f"edits[{i}]") for i, e in enumerate(req.edits or []) if e.amount != 0]
        if req.edits:
            base["edits"] = [
                {**e.model_dump(exclude_none=True), **({"layers": layers_param(e.layers)} if e.layers else {})}
                for e in req.edits
            ]

        def mapping(zs: list[torch.Tensor]) -> torch.Tensor:
            z = torch.stack(zs).to(device)
            c = torch.full([len(zs)], cls, device=device) if cls is not None else None
            return model.mapping(z, c, req.truncation_psi, req.truncation_cutoff).cpu()

        sources = self._sources(model, req, mapping)  # (params, ws, noise seed, z or None) per latent
        ws_rows: list[torch.Tensor] = []
        noise_seeds: list[int] = []
        params: list[dict[str, Any]] = []
        if req.style_mix:
            mix_seeds = req.style_mix.seeds
            ws_mix = mapping([normal_from_seed(s, z_dim) for s in mix_seeds])
            lo, hi = mix_span
            layers = layers_param(req.style_mix.layers)
            for label, w0, noise_seed, _ in sources:  # rows: sources, columns: mixing seeds (StyleGAN2-ADA's figure)
                for j, m in enumerate(mix_seeds):
                    w = w0.clone()
                    w[lo:hi] = ws_mix[j, lo:hi]
                    ws_rows.append(w)
                    noise_seeds.append(noise_seed)
                    params.append({**base, **label, "style_mix": {"seeds": [m], "layers": layers}})
        elif req.interpolate:
            ip = req.interpolate
            z_to = normal_from_seed(ip.to_seed, z_dim)
            ts = steps(ip.steps)
            w_to = mapping([z_to])[0]
            interp = {"to_seed": ip.to_seed, "steps": ip.steps, "space": ip.space}
            for label, w0, noise_seed, z0 in sources:
                if ip.space == "z":
                    if z0 is None:
                        raise RequestError("interpolate.space", "a w has no z: interpolate a w or projection in w")
                    ws_rows.extend(mapping([slerp(z0, z_to, t) for t in ts]))
                else:
                    ws_rows.extend(w0.lerp(w_to, t) for t in ts)
                for k, t in enumerate(ts):
                    noise_seeds.append(noise_seed)
                    params.append({**base, **label, "interpolate": interp, "frame": k, "t": round(t, 6)})
        else:
            for label, w0, noise_seed, _ in sources:
                ws_rows.append(w0)
                noise_seeds.append(noise_seed)
                params.append({**base, **label})

        ws = torch.stack(ws_rows)
        for (lo, hi), shift in shifts:
            ws[:, lo:hi] += shift
        rows = {"ws": ws}
        n = len(ws_rows)
        layers = self.noise_layers(model)
        if req.noise_mode == "random":
            # Drawn from a generator seeded with the image's seed: the same seed gives the same noise anywhere.
            per_image = [self._seed_noise(model, s) for s in noise_seeds]
            for k in range(len(layers)):
                rows[f"noise{k}"] = torch.cat([noise[k] for noise in per_image])
        else:
            for k, layer in enumerate(layers):
                t = layer.noise_const.detach().cpu()
                t = t if req.noise_mode == "const" else torch.zeros_like(t)
                rows[f"noise{k}"] = t.reshape(1, 1, *t.shape).expand(n, -1, -1, -1)
        return Plan(req, rows, params)

    def _sources(self, model: nn.Module, req: StyleRequest, mapping: Any) -> list[tuple[dict, torch.Tensor, int, Any]]:
        """The latents a request starts from, each as (params, ws [num_ws, w_dim], noise seed, z or None)."""
        z_dim, num_ws, w_dim = model.config.z_dim, model.num_ws, model.config.w_dim
        if req.w is None and req.project is None:
            zs = [normal_from_seed(s, z_dim) for s in req.seeds]
            return [({"seeds": [s]}, w, s, z) for s, w, z in zip(req.seeds, mapping(zs), zs)]
        if req.w is not None:
            w = torch.from_numpy(req.latents())
            if w.shape[-1] != w_dim or w.shape[1] not in (1, num_ws):
                raise RequestError("w", f"expected [{num_ws} or 1, {w_dim}] per latent for this model, got "
                                        f"{list(w.shape[1:])}")  # fmt: skip
            w = w.expand(-1, num_ws, -1)
            labels = [{"w": lid} for lid in latents_store.save_many([x.numpy() for x in w])]
        else:
            target = self._project_target(model, req)
            from ganserve.projection import project

            hook = jobs.progress_hook()  # set when a server runs this as a job: progress, and cancellation
            report = (lambda k, _loss: hook(k, req.project_steps)) if hook else None
            result = project(model, target, steps=req.project_steps, progress=report)
            w = result.ws[None]
            labels = [{"w": latents_store.save(result.ws.numpy()), "psnr": round(result.psnr, 3),
                       "project_steps": req.project_steps}]  # fmt: skip
        truncated = model.mapping.truncate(w.to(model_device(model)), req.truncation_psi, req.truncation_cutoff)
        return [(label, t, 0, None) for label, t in zip(labels, truncated.cpu())]

    @staticmethod
    def _project_target(model: nn.Module, req: StyleRequest) -> np.ndarray:
        cfg = model.config
        try:
            return decode_image(req.project, cfg.resolution, cfg.img_channels)
        except ImageDecodeError as e:
            raise RequestError("project", f"image {e}") from None

    def check(self, model: nn.Module, req: StyleRequest) -> None:
        """Everything a projection request is checked for, without the projection: its image, and the other fields
        on a seed in its place."""
        self._project_target(model, req)
        self.plan(model, req.model_copy(update={"project": None, "seeds": [0]}))

    def prepare(self, model: nn.Module) -> None:
        """Directions are found once, at load, so no edit request pays for them."""
        for method in directions.METHODS:
            with contextlib.suppress(RequestError):  # an export made without directions: its edits refuse by name
                latent_directions(model, method, "edits.method")

    def _edit_shift(self, model: nn.Module, edit: Edit, field: str) -> tuple[tuple[int, int], torch.Tensor]:
        """The [start, stop) ws an edit moves and the vector it adds to each: amount * std_k * direction_k."""
        found = latent_directions(model, edit.method, f"{field}.method")
        if edit.direction >= len(found):
            msg = f"{edit.direction} is out of range: the model has {len(found)} {edit.method} directions"
            raise RequestError(f"{field}.direction", msg)
        num_ws = model.num_ws
        span = (0, num_ws) if edit.layers is None else layer_span(edit.layers, num_ws, f"{field}.layers")
        k = edit.direction
        return span, edit.amount * found.stds[k] * found.vectors[k]

    # ---- what ganserve.directions needs -----------------------------------------------------------------------------
    def sample_ws(self, model: nn.Module, n: int) -> torch.Tensor:
        """w for ``n`` random z (a fixed stream: the same ws every time), without truncation; [n, w_dim]."""
        gen = torch.Generator().manual_seed(0)
        z = torch.randn([n, model.config.z_dim], generator=gen)
        names = resolve_classes_for_sampling(model, n, gen)
        with torch.no_grad():
            return model.mapping(z.to(model_device(model)), names)[:, 0].float().cpu()

    def style_weights(self, model: nn.Module) -> list[torch.Tensor]:
        """Every style affine of the synthesis network (one [channels, w_dim] matrix per layer), gain applied."""
        return [m.affine.weight * m.affine.weight_gain for m in model.synthesis.modules() if hasattr(m, "affine")]

    @staticmethod
    def _seed_noise(model: nn.Module, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [torch.randn([1, 1, h, w], generator=gen) for h, w in model.synthesis.noise_shapes()]

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        device = model_device(model)
        noise = [rows[f"noise{k}"].to(device) for k in range(len(rows) - 1)]
        return model.synthesis(rows["ws"].to(device), noise_mode="random", noise=noise, fused=False)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {"num_ws": model.num_ws, "layer_groups": layer_groups(model.num_ws),
                "directions": directions.describe(model)}  # fmt: skip


def resolve_classes_for_sampling(model: nn.Module, n: int, gen: torch.Generator) -> torch.Tensor | None:
    """Random class ids for a class-conditional model's latent statistics (None when unconditional)."""
    c_dim = int(getattr(model.config, "c_dim", 0) or 0)
    return torch.randint(0, c_dim, [n], generator=gen).to(model_device(model)) if c_dim else None


class StyleGAN2Request(StyleRequest):
    pass


FAMILY = Family(
    name="stylegan2",
    generator=Part("ganserve.models.stylegan2:StyleGAN2Config", "ganserve.models.stylegan2:StyleGAN2Generator"),
    discriminator="ganserve.models.stylegan2:StyleGAN2Discriminator",
    request=StyleGAN2Request,
    sampler=StyleSampler(),
    exporter="ganserve.export.stylegan2",
    training="ganserve.train.stylegan2:StyleGAN2Training",
    description="StyleGAN2 (Karras et al. 2020): mapping network, modulated convolutions, skip G, residual D",
)
