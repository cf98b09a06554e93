"""Importing pytorch-pretrained-BigGAN .bin files and taming-transformers .ckpt files without running their code.

Release-layout files are built here from the documented key names and shapes (the BigGAN release's state dict with its
config.json; taming's Lightning checkpoints: ``state_dict`` with ``encoder.*`` / ``quantize.*`` / ``loss.*`` or
``first_stage_model.*`` / ``transformer.*``, callback states keyed by a Lightning class), so the round trip is tested
everywhere. Where a checkout of the official code is given (``GANSERVE_HF_BIGGAN_SRC``, ``GANSERVE_TAMING_SRC``; never
vendored), the official model is built with random weights at a small config in a subprocess, saved in the release
format, imported, and compared with ours on the same inputs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import ganserve
from ganserve import families
from ganserve.cli import main
from ganserve.importers import ImportError_, detect, import_checkpoint, read_source
from ganserve.models.biggan import BigGANConfig, BigGANGenerator
from ganserve.models.vqgan import VQGAN, VQGANConfig
from ganserve.sampling import sample

# The release's layer pattern (two blocks per resolution, the second upsampling), 16 * ch channels down to ch.
RELEASE_LAYERS = [[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2],
                  [False, 2, 2], [True, 2, 1]]  # fmt: skip
BIGGAN = dict(resolution=64, img_channels=3, c_dim=5, z_dim=16, embed_dim=16, channel_width=4, layers=RELEASE_LAYERS,
              attention_layer_position=4, deep=True, n_stats=51, eps=1e-4)  # fmt: skip
TRUNCATIONS = (1.0, 0.7, 0.4, 0.2)  # on the release's 51-point statistics grid: both interpolations agree there
VQ = dict(resolution=16, img_channels=3, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=8,
          embed_dim=8, n_embed=64, prior_layers=2, prior_heads=2, prior_embd=32)  # fmt: skip


def _official(env: str) -> Path | None:
    path = os.environ.get(env)
    return Path(path) if path and Path(path).is_dir() else None


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial values where a fresh model has zeros and ones (biases, norms, gamma, statistics)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("running_vars"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("bias", "gamma", "running_means")) or (t.ndim == 1 and name.endswith("weight")):
                t.add_(0.2 * torch.randn(t.shape, generator=g))


# ---------------------------------------------------------------------------------------------------------------------
# pytorch-pretrained-BigGAN: pytorch_model.bin (+ config.json)


def tiny_biggan(seed: int = 0) -> BigGANGenerator:
    torch.manual_seed(seed)
    G = BigGANGenerator(BigGANConfig(**BIGGAN)).eval()
    _perturb(G, seed)
    return G.requires_grad_(False)


def release_config(cfg: BigGANConfig) -> dict:
    """config.json as pytorch-pretrained-BigGAN writes it (BigGANConfig.to_dict)."""
    return {"output_dim": cfg.resolution, "z_dim": cfg.z_dim, "class_embed_dim": cfg.embed_dim,
            "channel_width": cfg.channel_width, "num_classes": cfg.c_dim, "layers": cfg.layers,
            "attention_layer_position": cfg.attention_layer_position, "eps": cfg.eps,
            "n_stats": cfg.n_stats}  # fmt: skip


def write_release(G: BigGANGenerator, folder: Path, with_config: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(G.state_dict(), folder / "pytorch_model.bin")  # the release's names are ours
    if with_config:
        (folder / "config.json").write_text(json.dumps(release_config(G.config)))
    return folder / "pytorch_model.bin"


@pytest.mark.parametrize("with_config", [True, False])
def test_hf_biggan_round_trip(tmp_path, with_config):
    G = tiny_biggan(1)
    src = write_release(G, tmp_path / "biggan-deep-64", with_config)
    assert detect(src, read_source(src)) == "hf-biggan"
    imported, meta = import_checkpoint(src, tmp_path / "bg.safetensors")
    cfg = meta["config"]
    for key, value in BIGGAN.items():
        assert cfg[key] == value, key
    assert imported.notes[0].startswith("config from config.json" if with_config else "no config.json")
    ours = ganserve.load(tmp_path / "bg.safetensors")
    for k, v in G.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    req = {"seeds": [1], "class": 3, "truncation_psi": 0.4}
    assert np.array_equal(sample(ours, req).images, sample(G, req).images)


def test_hf_biggan_refusals(tmp_path):
    G = tiny_biggan(2)
    src = write_release(G, tmp_path / "a")
    bad = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**bad, "num_classes": 1000}))
    with pytest.raises(ImportError_, match="num_classes=1000, the tensors say 5"):
        import_checkpoint(src, tmp_path / "a.safetensors")
    sd = G.state_dict()
    del sd["generator.layers.1.bn_2.scale.weight_v"]
    (tmp_path / "b").mkdir()
    torch.save(sd, tmp_path / "b" / "pytorch_model.bin")
    with pytest.raises(ImportError_, match=r"missing tensors \['generator.layers.1.bn_2.scale.weight_v'\]"):
        import_checkpoint(tmp_path / "b" / "pytorch_model.bin", tmp_path / "b.safetensors", source="hf-biggan")
    marker = tmp_path / "ran"
    torch.save({"embeddings.weight": torch.zeros(1), "x": _Evil(marker)}, tmp_path / "evil.bin")
    with pytest.raises(ImportError_, match=r"weights-only .*refused to load (posix|os)\.system"):
        import_checkpoint(tmp_path / "evil.bin", tmp_path / "c.safetensors", source="hf-biggan")
    assert not marker.exists() and not (tmp_path / "c.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------------
# taming-transformers: Lightning .ckpt files


@pytest.fixture
def vqgan_family(monkeypatch):
    """The VQ-GAN family, registered for this test only where it has not landed in BUILTIN yet."""
    if "vqgan" not in families.BUILTIN:
        monkeypatch.setitem(families._LOADED, "vqgan", families._attr("ganserve.families.vqgan:FAMILY"))


LIGHTNING = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")


@contextmanager
def _lightning_names() -> Iterator[type]:
    """A stand-in ModelCheckpoint class under Lightning's module name, only so that pickle can name it when writing."""
    mods = {n: types.ModuleType(n) for n in LIGHTNING}
    cls = type("ModelCheckpoint", (), {"__module__": LIGHTNING[-1]})
    mods[LIGHTNING[-1]].ModelCheckpoint = cls
    saved = {n: sys.modules.get(n) for n in LIGHTNING}
    sys.modules.update(mods)
    try:
        yield cls
    finally:
        for n, m in saved.items():
            if m is None:
                del sys.modules[n]
            else:
                sys.modules[n] = m


def lightning_ckpt(state_dict: dict[str, torch.Tensor], path: Path, **extra) -> Path:
    """A checkpoint as PyTorch Lightning 1.0 writes it: callback states keyed by the callback's class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lightning_names() as model_checkpoint:
        torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8", "state_dict": state_dict,
                    "callbacks": {model_checkpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x"}},
                    "optimizer_states": [], "lr_schedulers": [], **extra}, path)  # fmt: skip
    return path


def tiny_vqgan(seed: int = 0, **overrides) -> VQGAN:
    torch.manual_seed(seed)
    G = VQGAN(VQGANConfig(**{**VQ, **overrides})).eval()
    _perturb(G, seed)
    return G.requires_grad_(False)


def taming_first_stage(G: VQGAN, prefix: str = "") -> dict[str, torch.Tensor]:
    """VQModel's state dict: our first stage's names are taming's; the loss (discriminator, LPIPS) rides along."""
    sd = {prefix + k: v for k, v in G.first_stage.state_dict().items()}
    if not prefix:
        sd |= {"loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4), "loss.perceptual_loss.lin0.model.1.weight":
               torch.randn(1, 64, 1, 1)}  # fmt: skip
    return sd


def taming_transformer(n_layer: int, n_embd: int, vocab: int, block: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """minGPT's state dict under ``transformer.`` with documented shapes (random values)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"transformer.tok_emb.weight": torch.randn(vocab, n_embd, generator=g),
          "transformer.pos_emb": torch.randn(1, block, n_embd, generator=g),
          "transformer.ln_f.weight": torch.randn(n_embd, generator=g), "transformer.ln_f.bias": torch.randn(n_embd),
          "transformer.head.weight": torch.randn(vocab, n_embd, generator=g)}  # fmt: skip
    for i in range(n_layer):
        p = f"transformer.blocks.{i}."
        for ln in ("ln1", "ln2"):
            sd[f"{p}{ln}.weight"], sd[f"{p}{ln}.bias"] = torch.randn(n_embd, generator=g), torch.randn(n_embd)
        for lin in ("key", "query", "value", "proj"):
            sd[f"{p}attn.{lin}.weight"] = torch.randn(n_embd, n_embd, generator=g)
            sd[f"{p}attn.{lin}.bias"] = torch.randn(n_embd, generator=g)
        sd[f"{p}attn.mask"] = torch.ones(block, block).tril()[None, None]
        sd[f"{p}mlp.0.weight"] = torch.randn(4 * n_embd, n_embd, generator=g)
        sd[f"{p}mlp.0.bias"] = torch.randn(4 * n_embd, generator=g)
        sd[f"{p}mlp.2.weight"] = torch.randn(n_embd, 4 * n_embd, generator=g)
        sd[f"{p}mlp.2.bias"] = torch.randn(n_embd, generator=g)
    return sd


def project_yaml(folder: Path, n_classes: int | None, n_head: int, vocab: int, block: int, cfg: dict) -> None:
    """taming's logs/NAME/configs/NAME-project.yaml for a Net2NetTransformer."""
    import yaml

    cond = ({"target": "taming.modules.util.Labelator", "params": {"n_classes": n_classes}} if n_classes
            else "__is_unconditional__")  # fmt: skip
    dd = {"double_z": False, "z_channels": cfg["z_channels"], "resolution": cfg["resolution"], "in_channels": 3,
          "out_ch": 3, "ch": cfg["ch"], "ch_mult": cfg["ch_mult"], "num_res_blocks": cfg["num_res_blocks"],
          "attn_resolutions": cfg["attn_resolutions"], "dropout": 0.0}  # fmt: skip
    doc = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer", "params": {
        "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": {
            "vocab_size": vocab, "block_size": block, "n_layer": 2, "n_head": n_head, "n_embd": 32}},
        "first_stage_config": {"target": "taming.models.vqgan.VQModel", "params": {
            "embed_dim": cfg["embed_dim"], "n_embed": cfg["n_embed"], "ddconfig": dd,
            "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}},
        "cond_stage_config": cond}}}  # fmt: skip
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "run-project.yaml").write_text(yaml.safe_dump(doc))


def test_taming_first_stage_round_trip(tmp_path, vqgan_family):
    G = tiny_vqgan(3)
    src = lightning_ckpt(taming_first_stage(G), tmp_path / "vqgan" / "last.ckpt")
    assert detect(src, read_source(src)) == "taming"
    # no project config and no transformer: nothing in a convolutional first stage says its resolution
    with pytest.raises(ImportError_, match="pass --resolution"):
        import_checkpoint(src, tmp_path / "vq.safetensors")
    assert not (tmp_path / "vq.safetensors").exists()
    imported, meta = import_checkpoint(src, tmp_path / "vq.safetensors", resolution=16)
    fs = meta["parts"]["first_stage"]["config"]
    # attention where the tensors have it (level 1: 8 px at 16 px)
    assert {k: fs[k] for k in ("ch", "ch_mult", "num_res_blocks", "z_channels", "embed_dim", "n_embed")} == {
        k: VQ[k] for k in ("ch", "ch_mult", "num_res_blocks", "z_channels", "embed_dim", "n_embed")
    }
    assert fs["resolution"] == 16 and fs["attn_resolutions"] == [8]
    assert "resolution 16 from --resolution" in imported.notes and any("untrained" in n for n in imported.notes)
    assert "loss.discriminator.main.0.weight" in imported.unused
    ours = ganserve.load(tmp_path / "vq.safetensors")
    for k, v in G.first_stage.state_dict().items():
        assert torch.equal(ours.first_stage.state_dict()[k], v), k
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = G.first_stage.encode_codes(x)
    assert torch.equal(ours.first_stage.encode_codes(x), codes)
    assert torch.equal(ours.first_stage.decode_codes(codes), G.first_stage.decode_codes(codes))


@pytest.mark.parametrize("n_classes", [3, None])
def test_taming_transformer_round_trip(tmp_path, vqgan_family, n_classes):
    G = tiny_vqgan(4)
    code_len = (VQ["resolution"] >> 1) ** 2
    vocab, block = VQ["n_embed"], code_len  # as taming's cin transformer: codes and classes share the table
    gpt = taming_transformer(2, 32, vocab, block, seed=5)
    run = tmp_path / "logs" / "run"
    src = lightning_ckpt(taming_first_stage(G, "first_stage_model.") | gpt, run / "checkpoints" / "last.ckpt")
    project_yaml(run, n_classes, n_head=4, vocab=vocab, block=block, cfg=VQ)
    assert detect(src, read_source(src)) == "taming"
    imported, meta = import_checkpoint(src, tmp_path / "t.safetensors")
    prior = meta["parts"]["prior"]["config"]
    assert (prior["n_layer"], prior["n_head"], prior["n_embd"], prior["c_dim"]) == (2, 4, 32, n_classes or 0)
    assert (prior["code_height"], prior["num_codes"]) == (8, 64)
    assert meta["parts"]["first_stage"]["config"]["attn_resolutions"] == [8]
    ours = ganserve.load(tmp_path / "t.safetensors")
    sd = ours.prior.state_dict()
    start_ids = list(range(n_classes)) if n_classes else [0]  # Labelator: class k is token k; sos token 0
    assert torch.equal(sd["tok_emb.weight"], torch.cat([gpt["transformer.tok_emb.weight"][:64],
                                                        gpt["transformer.tok_emb.weight"][start_ids]]))  # fmt: skip
    assert torch.equal(sd["pos_emb"][:, :block], gpt["transformer.pos_emb"]) and not sd["pos_emb"][:, block:].any()
    assert torch.equal(sd["head.weight"], gpt["transformer.head.weight"][:64])
    for k, v in gpt.items():
        if not k.endswith(("tok_emb.weight", "pos_emb", "head.weight", "attn.mask")):
            assert torch.equal(sd[k.removeprefix("transformer.")], v), k
    assert all(k.endswith("attn.mask") for k in imported.unused)
    assert torch.equal(ours.first_stage.quantize.embedding.weight, G.first_stage.quantize.embedding.weight)
    req = {"seeds": [1], "top_k": 5, **({"class": 2} if n_classes else {})}
    assert sample(ours, req).images.shape == (1, 16, 16, 3)


def test_taming_config_from_shapes_alone(tmp_path, vqgan_family):
    G = tiny_vqgan(6)
    gpt = taming_transformer(2, 32, 64, 64)
    src = lightning_ckpt(taming_first_stage(G, "first_stage_model.") | gpt, tmp_path / "last.ckpt")
    imported, meta = import_checkpoint(src, tmp_path / "t.safetensors")
    fs, prior = meta["parts"]["first_stage"]["config"], meta["parts"]["prior"]["config"]
    assert fs["resolution"] == 16 and fs["attn_resolutions"] == [8]  # 64 positions: an 8x8 grid, one downsampling
    assert (prior["n_head"], prior["c_dim"]) == (8, 0)
    assert sum("no project config" in n for n in imported.notes) == 2


def test_taming_refusals(tmp_path, vqgan_family):
    G = tiny_vqgan(7)
    sd = taming_first_stage(G)
    missing = dict(sd)
    del missing["decoder.up.1.block.0.conv2.bias"]
    src = lightning_ckpt(missing, tmp_path / "m.ckpt")
    with pytest.raises(ImportError_, match=r"missing tensors \['first_stage.decoder.up.1.block.0.conv2.bias'\]"):
        import_checkpoint(src, tmp_path / "m.safetensors", resolution=16)
    no_quant = {k: v for k, v in sd.items() if k != "quant_conv.weight"}
    with pytest.raises(ImportError_, match=r"lacks quant_conv\.weight"):
        import_checkpoint(lightning_ckpt(no_quant, tmp_path / "q.ckpt"), tmp_path / "q.safetensors", source="taming")
    gumbel = {**sd, "quantize.embed.weight": torch.zeros(64, 8)}
    with pytest.raises(ImportError_, match="Gumbel"):
        import_checkpoint(lightning_ckpt(gumbel, tmp_path / "g.ckpt"), tmp_path / "g.safetensors")
    depth = {**taming_first_stage(G, "first_stage_model."), **taming_transformer(1, 32, 64, 64),
             "cond_stage_model.encoder.conv_in.weight": torch.zeros(1)}  # fmt: skip
    with pytest.raises(ImportError_, match="cond_stage_model"):
        import_checkpoint(lightning_ckpt(depth, tmp_path / "d.ckpt"), tmp_path / "d.safetensors")
    marker = tmp_path / "ran"
    evil = lightning_ckpt(sd, tmp_path / "evil.ckpt", hyper_parameters=_Evil(marker))
    with pytest.raises(ImportError_, match=r"refused to load (posix|os)\.system"):
        import_checkpoint(evil, tmp_path / "e.safetensors")
    assert not marker.exists() and not (tmp_path / "e.safetensors").exists()


def test_lightning_globals_load_as_inert_data(tmp_path):
    from ganserve.importers.safe_pickle import INERT_MODULES, InertObject, torch_load

    src = lightning_ckpt({"w": torch.ones(2)}, tmp_path / "x.ckpt")
    ckpt = torch_load(src.read_bytes(), inert_modules=INERT_MODULES)
    (key,) = ckpt["callbacks"]
    assert issubclass(key, InertObject) and key.qualified_name.endswith("ModelCheckpoint")
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2))
    with pytest.raises(pickle.UnpicklingError, match="refused to load pytorch_lightning"):
        torch_load(src.read_bytes())  # without the inert modules: refused by name


def test_cli_import_reports_biggan_and_taming(tmp_path, capsys):
    src = write_release(tiny_biggan(8), tmp_path / "bg")
    assert main(["import", str(src), "--out", str(tmp_path / "bg.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "found: hf-biggan checkpoint -> biggan at 64 px, z 16, embed 16, ch 4, classes 5" in printed
    assert "mapped 410 tensors; left unused 0" in printed and "note: config from config.json" in printed
    src = lightning_ckpt(taming_first_stage(tiny_vqgan(9)), tmp_path / "vq" / "last.ckpt")
    out = tmp_path / "vq.safetensors"
    code = main(["import", str(src), "--from", "taming", "--resolution", "16", "--out", str(out)])
    printed = capsys.readouterr()
    if "vqgan" not in families.BUILTIN:  # until the VQ-GAN family lands, the import says so and writes nothing
        assert code == 2 and "family 'vqgan' is not available" in printed.err and not out.exists()
        return
    assert code == 0, printed.err
    assert "found: taming checkpoint -> vqgan at 16 px" in printed.out and "codes 64" in printed.out
    assert "left unused 2: loss.discriminator.main.0.weight" in printed.out and "note: no transformer" in printed.out


# ---------------------------------------------------------------------------------------------------------------------
# Parity with the official code (only where a checkout is given)

STUBS = """
import sys, types
def stub(name, **attrs):
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
"""


@pytest.mark.skipif(_official("GANSERVE_HF_BIGGAN_SRC") is None, reason="no pytorch-pretrained-BigGAN checkout given")
def test_hf_biggan_parity_with_the_official_code(tmp_path):
    folder = tmp_path / "release"
    script = (
        STUBS
        + f"""
import json, torch
# file_utils' download helpers are never called here: stand-ins where boto3 & co. are not installed
stub("boto3"); stub("botocore"); stub("botocore.exceptions", ClientError=Exception)
stub("requests"); stub("tqdm", tqdm=None)
stub("scipy"); stub("scipy.stats", truncnorm=None)
sys.path.insert(0, {str(_official("GANSERVE_HF_BIGGAN_SRC"))!r})
from pytorch_pretrained_biggan.config import BigGANConfig
from pytorch_pretrained_biggan.model import BigGAN
torch.manual_seed(0)
cfg = BigGANConfig(output_dim=64, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=5,
                   layers={RELEASE_LAYERS!r}, attention_layer_position=4, eps=1e-4, n_stats=51)
G = BigGAN(cfg)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for n, t in [*G.named_parameters(), *G.named_buffers()]:
        if n.endswith("running_vars"): t.copy_(0.5 + torch.rand(t.shape, generator=g))
        elif n.endswith(("running_means", "gamma", "bias")) or (t.ndim == 1 and not n.endswith(("_u", "_v"))):
            t.normal_(0, 0.3, generator=g)
    G.train()
    for _ in range(5):  # power iterations: u, v as a trained model has them
        G(torch.randn(2, 16), torch.eye(5)[:2], 1.0)
G.eval()
import os; os.makedirs({str(folder)!r}, exist_ok=True)
torch.save(G.state_dict(), {str(folder / "pytorch_model.bin")!r})
json.dump(cfg.to_dict(), open({str(folder / "config.json")!r}, "w"))
z = torch.randn(6, 16, generator=g).clamp(-2, 2)
c = torch.eye(5)[[0, 1, 2, 3, 4, 0]]
c[5] = 0.5 * c[5] + 0.5 * torch.eye(5)[3]  # a class mixture
outs = {{}}
with torch.no_grad():
    for t in {TRUNCATIONS!r} + (0.333,):  # 0.333: between grid points, where the two interpolations differ
        outs[t] = G(z * t, c, t)
torch.save({{"z": z, "c": c, "outs": outs}}, {str(tmp_path / "ref.pt")!r})
"""
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    import_checkpoint(folder / "pytorch_model.bin", tmp_path / "ours.safetensors")
    ours = ganserve.load(tmp_path / "ours.safetensors")
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    diffs = {}
    with torch.no_grad():
        for t, want in ref["outs"].items():
            diffs[t] = float((ours(ref["z"] * t, ref["c"], t) - want).abs().max())
    print(f"hf-biggan parity, max abs by truncation: {diffs}; output std {float(ref['outs'][1.0].std()):.3f}")
    for t in TRUNCATIONS:
        assert diffs[t] <= 1e-4, (t, diffs[t])


@pytest.mark.skipif(_official("GANSERVE_TAMING_SRC") is None, reason="no taming-transformers checkout given")
def test_taming_parity_with_the_official_code(tmp_path, vqgan_family):
    script = (
        STUBS
        + f"""
import torch
# mingpt imports transformers' top_k_top_p_filtering (a sampling helper not used here); quantize uses einops
stub("transformers", top_k_top_p_filtering=None)
def rearrange(x, pattern, **sizes):
    lhs, rhs = [s.split() for s in pattern.split("->")]
    return x.permute(*[lhs.index(a) for a in rhs])
stub("einops", rearrange=rearrange)
sys.path.insert(0, {str(_official("GANSERVE_TAMING_SRC"))!r})
from taming.modules.diffusionmodules.model import Encoder, Decoder
from taming.modules.vqvae.quantize import VectorQuantizer2
from taming.modules.transformer.mingpt import GPT
torch.manual_seed(0)
dd = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
          num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
vq = torch.nn.Module()  # VQModel's attribute names, without Lightning
vq.encoder, vq.decoder = Encoder(**dd), Decoder(**dd)
vq.quantize = VectorQuantizer2(64, 8, beta=0.25)
vq.quant_conv, vq.post_quant_conv = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 8, 1)
gpt = GPT(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_embd=32)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for n, t in [*vq.named_parameters(), *gpt.named_parameters()]:
        if t.ndim == 1 or n.endswith("pos_emb"): t.normal_(0, 0.3, generator=g)
    vq.quantize.embedding.weight.normal_(0, 1, generator=g)
vq.eval(); gpt.eval()
x = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
with torch.no_grad():
    _, _, (_, _, idx) = vq.quantize(vq.quant_conv(vq.encoder(x)))
    codes = idx.reshape(3, 8, 8)
    dec = vq.decoder(vq.post_quant_conv(vq.quantize.get_codebook_entry(idx, (3, 8, 8, 8))))
    c = torch.tensor([[0], [2], [1]])
    logits, _ = gpt(torch.cat([c, codes.reshape(3, -1)[:, :-1]], dim=1))
torch.save({{"vq": vq.state_dict(), "gpt": gpt.state_dict(), "x": x, "codes": codes, "dec": dec, "c": c[:, 0],
            "logits": logits}}, {str(tmp_path / "ref.pt")!r})
"""
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    run = tmp_path / "logs" / "cin"
    sd = {"first_stage_model." + k: v for k, v in ref["vq"].items()}
    sd |= {"transformer." + k: v for k, v in ref["gpt"].items()}
    src = lightning_ckpt(sd, run / "checkpoints" / "last.ckpt")
    project_yaml(run, 3, n_head=4, vocab=64, block=64, cfg=VQ)
    import_checkpoint(src, tmp_path / "t.safetensors")
    vq_only = lightning_ckpt(ref["vq"], tmp_path / "vq" / "last.ckpt")
    import_checkpoint(vq_only, tmp_path / "vq.safetensors", resolution=16)  # a first stage alone: 8x8 codes of 16 px
    for path in (tmp_path / "t.safetensors", tmp_path / "vq.safetensors"):
        ours = ganserve.load(path)
        with torch.no_grad():
            codes = ours.encode_codes(ref["x"])
            dec = ours.decode_codes(ref["codes"])
        assert torch.equal(codes, ref["codes"])
        dec_diff = float((dec - ref["dec"]).abs().max())
        print(f"taming parity ({path.stem}): codes equal, decoding max abs {dec_diff:.2e}")
        assert dec_diff <= 1e-4
    ours = ganserve.load(tmp_path / "t.safetensors")
    tokens = torch.cat([ours.start_tokens(ref["c"], 3)[:, None], ref["codes"].reshape(3, -1)[:, :-1]], dim=1)
    with torch.no_grad():
        logit_diff = float((ours.prior(tokens) - ref["logits"][..., :64]).abs().max())
    print(f"taming parity: prior logits max abs {logit_diff:.2e}")
    assert logit_diff <= 1e-4
