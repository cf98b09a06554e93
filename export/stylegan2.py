"""StyleGAN2 export: two graphs, so front ends can mix styles and interpolate in W between them.

mapping:   z [N, z_dim] (, class ids [N] int64), psi [] float, cutoff [] int64  ->  ws [N, num_ws, w_dim]
           (w_avg is baked in; cutoff = num_ws truncates every layer)
synthesis: ws [N, num_ws, w_dim], noise0..noiseK [N, 1, H, W]  ->  img [N, C, H, W]
           (noise goes in explicitly: const noise is the stored noise_const, "none" is zeros)

Beside the graphs (constants.safetensors): w_avg, const noise, and the model's semantic directions (SeFa and PCA,
found from the eager weights at export time), so ``w`` requests (truncation of given ws) and ``edits`` run on the
exported backend as they do eagerly.

The synthesis graph uses the activation-scaling modulated convolution (fused=False): the grouped-convolution form
folds the batch into the channel axis and would pin it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganserve import directions
from ganserve.directions import Directions
from ganserve.export.registry import ExportedModel, Exporter, GraphSpec, Runner, register_exporter
from ganserve.models.stylegan2 import MappingNetwork


class _MappingGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.mapping, self.conditional = G.mapping, bool(G.config.c_dim)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.conditional:
            z, c, psi, cutoff = inputs
        else:
            (z, psi, cutoff), c = inputs, None
        return self.mapping(z, c, psi, cutoff)


class _SynthesisGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.synthesis = G.synthesis

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        ws, *noise = inputs
        return self.synthesis(ws, noise_mode="random", noise=noise, fused=False)


@register_exporter("stylegan2")
class StyleGAN2Exporter(Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        cfg, num_ws = model.config, model.num_ws
        shapes = model.synthesis.noise_shapes()

        def mapping_inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            z = torch.randn([n, cfg.z_dim], generator=gen)
            psi = torch.rand([], generator=gen) * 1.5 - 0.25  # psi in [-0.25, 1.25): extrapolation too
            cutoff = torch.randint(1, num_ws + 1, [], generator=gen)
            if cfg.c_dim:
                return z, torch.randint(0, cfg.c_dim, [n], generator=gen), psi, cutoff
            return z, psi, cutoff

        def synthesis_inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            # ws from the real mapping (random z, psi 0.7) so activations have a trained model's statistics.
            with torch.no_grad():
                ws = model.mapping(torch.randn([n, cfg.z_dim], generator=gen), _random_class(cfg, n, gen), 0.7)
            return (ws, *[torch.randn([n, 1, h, w], generator=gen) for h, w in shapes])

        map_names = ["z", "c", "psi", "cutoff"] if cfg.c_dim else ["z", "psi", "cutoff"]
        syn_names = ["ws"] + [f"noise{i}" for i in range(len(shapes))]
        return [
            GraphSpec("mapping", _MappingGraph(model).eval(), map_names, "ws", mapping_inputs,
                      batched=[True, True, False, False] if cfg.c_dim else [True, False, False], half=False),
            GraphSpec("synthesis", _SynthesisGraph(model).eval(), syn_names, "img", synthesis_inputs,
                      batched=[True] * len(syn_names)),
        ]  # fmt: skip

    def manifest(self, model: nn.Module) -> dict[str, Any]:
        # The directions' names travel beside their tensors (directions_constants), measured on the eager model.
        names = {m: directions.get(model, m).names for m in directions.METHODS}
        return {"num_ws": model.num_ws, "noise_shapes": [list(s) for s in model.synthesis.noise_shapes()],
                "direction_names": names}  # fmt: skip

    def constants(self, model: nn.Module) -> dict[str, torch.Tensor]:
        layers = [m for m in model.synthesis.modules() if hasattr(m, "noise_const")]
        consts = {"w_avg": model.mapping.w_avg}
        consts.update({f"noise_const.{i}": layer.noise_const for i, layer in enumerate(layers)})
        consts.update(directions_constants(model))
        return {k: v.detach().cpu().contiguous() for k, v in consts.items()}

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedStyleGAN2(manifest, runners, constants, device)


def _random_class(cfg: Any, n: int, gen: torch.Generator) -> torch.Tensor | None:
    return torch.randint(0, cfg.c_dim, [n], generator=gen) if cfg.c_dim else None


_DIRECTION_FIELDS = ("vectors", "stds", "strengths")


def directions_constants(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every direction method of the eager model as constants ``directions.<method>.<field>``: a graph has no weights
    to find them in, so they are found now (or read from ganserve.directions' cache) and travel with the export."""
    out = {}
    for method in directions.METHODS:
        found = directions.get(model, method)
        out.update({f"directions.{method}.{f}": getattr(found, f).float() for f in _DIRECTION_FIELDS})
    return out


def read_directions(
    constants: dict[str, torch.Tensor], names: dict[str, list[str]] | None = None
) -> dict[str, Directions]:
    """The directions an export carries (none in an export made before they shipped), named as the manifest's
    ``direction_names`` (an older export without them: "direction K")."""
    methods = {k.split(".")[1] for k in constants if k.startswith("directions.")}
    return {
        m: Directions(m, *(constants[f"directions.{m}.{f}"] for f in _DIRECTION_FIELDS), list((names or {}).get(m, [])))
        for m in sorted(methods)
    }


# ---------------------------------------------------------------------------------------------------------------------
# Runtime: the exported graphs behind the generator's sampling surface (what ganserve.sampling uses)


class _ExportedMapping(nn.Module):
    # Truncating given ws (a ``w`` request) is a lerp towards w_avg on the host: the eager mapping's own code.
    truncate = MappingNetwork.truncate

    def __init__(self, runner: Runner, w_avg: torch.Tensor, num_ws: int, conditional: bool) -> None:
        super().__init__()
        self.runner, self.num_ws, self.conditional = runner, num_ws, conditional
        self.register_buffer("w_avg", w_avg)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float | torch.Tensor = 1.0,
        truncation_cutoff: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        psi = torch.as_tensor(truncation_psi, dtype=torch.float32).reshape([])
        cutoff = torch.as_tensor(self.num_ws if truncation_cutoff is None else truncation_cutoff).long().reshape([])
        if self.conditional:
            if c is None:
                raise ValueError("this model is class-conditional: a class is required")
            return self.runner(z, c.long(), psi, cutoff)
        return self.runner(z, psi, cutoff)


class _NoiseConst(nn.Module):
    def __init__(self, noise_const: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("noise_const", noise_const)


class _ExportedSynthesis(nn.Module):
    def __init__(self, runner: Runner, noise_consts: list[torch.Tensor], resolution: int, img_channels: int) -> None:
        super().__init__()
        self.runner, self.resolution, self.img_channels = runner, resolution, img_channels
        # One child per noise input, in graph order, each with ``noise_const`` as the eager layers have it.
        self.layers = nn.ModuleList(_NoiseConst(t) for t in noise_consts)

    def noise_shapes(self) -> list[tuple[int, int]]:
        return [tuple(layer.noise_const.shape) for layer in self.layers]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor] | None = None,
        fused: bool | None = None,  # accepted for the eager signature; the graph is the activation-scaling form
    ) -> torch.Tensor:
        n = ws.shape[0]
        if noise_mode == "random":
            if noise is None:
                noise = [torch.randn([n, 1, h, w], device=ws.device) for h, w in self.noise_shapes()]
        elif noise_mode == "const":
            noise = [layer.noise_const.expand(n, 1, -1, -1) for layer in self.layers]
        elif noise_mode == "none":
            noise = [torch.zeros([n, 1, h, w], device=ws.device) for h, w in self.noise_shapes()]
        else:
            raise ValueError(f"noise_mode must be one of ('const', 'random', 'none'), got {noise_mode!r}")
        if len(noise) != len(self.layers):
            raise ValueError(f"synthesis takes {len(self.layers)} noise inputs, got {len(noise)}")
        return self.runner(ws, *noise)


class ExportedStyleGAN2(ExportedModel):
    """A StyleGAN2 generator backed by exported graphs (ONNX Runtime or torch.export)."""

    def __init__(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> None:
        super().__init__(manifest)
        self.num_ws = int(manifest["num_ws"])
        noise = [constants[f"noise_const.{i}"] for i in range(len(manifest["noise_shapes"]))]
        self.mapping = _ExportedMapping(runners["mapping"], constants["w_avg"], self.num_ws, bool(self.config.c_dim))
        self.synthesis = _ExportedSynthesis(runners["synthesis"], noise, self.config.resolution,
                                            self.config.img_channels)  # fmt: skip
        self.shipped_directions = read_directions(constants, manifest.get("direction_names"))
        self.finish(device)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), noise_mode=noise_mode)
