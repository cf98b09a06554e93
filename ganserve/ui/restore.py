"""Settings back from an image's embedded parameters (the tEXt chunk ``ganserve.images.encode_png`` writes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ganserve.images import read_png_params


@dataclass
class Restored:
    """Control values to set; ``tab`` is where the image came from: seed, grid, mix or interp."""

    tab: str
    model: str | None = None
    truncation_psi: float | None = None
    truncation_cutoff: int | None = None
    noise_mode: str | None = None
    class_: int | None = None
    seed: int | None = None
    seeds: str | None = None  # the grid's seeds
    mix_rows: str | None = None
    mix_cols: str | None = None
    mix_layers: str | list[int] | None = None
    interpolate: dict[str, Any] = field(default_factory=dict)  # from_seed, to_seed, steps, space
    w: str | None = None  # the latent the image started from (a projection's id) instead of a seed
    edits: list[dict[str, Any]] = field(default_factory=list)  # semantic-direction edits, as recorded
    params: dict[str, Any] = field(default_factory=dict)  # the (first) image's parameters: declared fields' values

    def summary(self) -> str:
        bits = [f"model {self.model}" if self.model else ""]
        start = self.w or f"seed {self.seed if self.tab == 'seed' else self.interpolate.get('from_seed')}"
        bits.append(
            {
                "seed": start,
                "grid": f"seeds {self.seeds}",
                "mix": f"rows {self.w or self.mix_rows} x columns {self.mix_cols}",
                "interp": f"{start} to seed {self.interpolate.get('to_seed')}",
            }[self.tab]
        )
        if self.truncation_psi is not None:
            bits.append(f"psi {self.truncation_psi:g}")
        if self.edits:
            bits.append(f"{len(self.edits)} edit{'s' if len(self.edits) > 1 else ''}")
        return ", ".join(b for b in bits if b)


def format_seeds(seeds: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> "0-3,7" (the request schema's seed syntax)."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j - i < 2 else f"{seeds[i]}-{seeds[j]}")
        if j - i == 1:
            parts.append(str(seeds[j]))
        i = j + 1
    return ",".join(parts)


def _unique(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


def mix_layers_param(value: Any) -> str | list[int]:
    """Recorded style-mixing layers -> a group name or inclusive [first, last].

    Images record a group name or "A-B" (inclusive); images made before layer ranges became inclusive recorded a
    [start, stop) list, which is read as such so that old files restore the figure they were made with.
    """
    if isinstance(value, list) and len(value) == 2:
        lo, stop = int(value[0]), int(value[1])
        return [lo, max(lo, stop - 1)]
    if isinstance(value, str) and "-" in value:
        lo, hi = value.split("-", 1)
        return [int(lo), int(hi)]
    return value


def restore_from_params(params: dict[str, Any]) -> Restored:
    """One image's parameters, or a grid's {"grid": [params, ...]} -> the controls that remake it."""
    items = params.get("grid") if isinstance(params.get("grid"), list) else [params]
    if not items or not all(isinstance(p, dict) and ("seeds" in p or "w" in p) for p in items):
        raise ValueError("the image's parameters hold no seeds: not a ganserve image")
    first = items[0]
    seeds = _unique([int(p["seeds"][0]) for p in items if "seeds" in p])
    r = Restored(tab="seed", params=first)
    if "w" in first and isinstance(first["w"], str):
        r.w = first["w"]
    if isinstance(first.get("edits"), list):
        r.edits = [e for e in first["edits"] if isinstance(e, dict) and "direction" in e]
    r.model = first.get("model")
    r.truncation_psi = first.get("truncation_psi")
    r.truncation_cutoff = first.get("truncation_cutoff")
    r.noise_mode = first.get("noise_mode")
    r.class_ = first.get("class")
    if "style_mix" in first:
        r.tab = "mix"
        r.mix_rows = format_seeds(seeds) if seeds else None
        r.mix_cols = format_seeds(_unique([int(s) for p in items for s in p["style_mix"]["seeds"]]))
        r.mix_layers = mix_layers_param(first["style_mix"].get("layers", "fine"))
    elif "interpolate" in first:
        ip = first["interpolate"]
        r.tab = "interp"
        r.interpolate = {
            "from_seed": seeds[0] if seeds else None,
            "to_seed": ip["to_seed"],
            "steps": ip.get("steps", 8),
            "space": ip.get("space", "w"),
        }
    elif len(seeds) > 1:
        r.tab, r.seeds = "grid", format_seeds(seeds)
    else:
        r.seed = seeds[0] if seeds else None
    return r


def declared_values(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The recorded values of declared fields (``defaults``: path -> the field's default, ``brightness`` or nested
    ``glow.amount``) in one image's parameters. A field the image does not record (a nested field whose parent was
    left out) was rendered at its default, so it restores to it; one with no default is left out."""
    first = params["grid"][0] if isinstance(params.get("grid"), list) and params["grid"] else params
    out: dict[str, Any] = {}
    for path, default in defaults.items():
        top, _, sub = path.partition(".")
        value = first.get(top)
        if sub:
            value = value.get(sub) if isinstance(value, dict) else None
        if value is None:
            value = default
        if value is not None:
            out[path] = value
    return out


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def restore_from_png(data: bytes) -> Restored:
    # Checked before PIL reads it: PIL's own error names the in-memory file object ("<_io.BytesIO object at 0x...>").
    if not isinstance(data, (bytes, bytearray)) or bytes(data[:8]) != PNG_SIGNATURE:
        raise ValueError("not a PNG image: drop a PNG made by ganserve (a JPEG or a re-saved copy has no settings)")
    try:
        params = read_png_params(bytes(data))
    except (OSError, ValueError, SyntaxError):
        raise ValueError("the PNG could not be read (a damaged or truncated file)") from None
    if not params:
        raise ValueError("this PNG carries no ganserve parameters (was it made by ganserve and saved as PNG?)")
    return restore_from_params(params)
