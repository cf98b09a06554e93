"""BigGAN: config checks, names, hierarchical latents, class conditioning, truncation, standing statistics, the
sampler's rows, and training steps that resume bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganserve
from ganserve.families.biggan import TRUNCATION_THRESHOLD, biggan_latent
from ganserve.latents import truncated_normal_from_seed
from ganserve.models.biggan import BigGANConfig, BigGANGenerator
from ganserve.requests import RequestError
from ganserve.sampling import describe, plan, render, sample
from tests.family_fixtures import CLASSES, TINY_BIGGAN, make_tiny_biggan, save_tiny


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("biggan"), "tiny-biggan", make_tiny_biggan())


@pytest.fixture(scope="module")
def G(tiny_path):
    return ganserve.load(tiny_path)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"z_dim": 25}, "equal chunks"),
        ({"layers": [[True, 4, 2], [True, 3, 1]]}, "do not chain"),
        ({"layers": [[True, 4, 2]]}, "not the resolution"),
        ({"channel_width": 10**9}, "channel"),
        ({"n_stats": 0}, "n_stats"),
        ({"attention_layer_position": 7}, "past the last"),
        ({"class_names": ["a"]}, "class_names"),
        ({"deep": "yes"}, "deep"),
        ({"deep": True, "layers": [[True, 4, 1], [True, 1, 1]]}, "keep or halve"),
    ],
)
def test_hostile_configs_are_refused(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        BigGANConfig(**{**TINY_BIGGAN, **override})


def test_names_follow_pytorch_pretrained_biggan():
    names = set(make_tiny_biggan().state_dict())
    for name in ["embeddings.weight", "generator.gen_z.weight_orig", "generator.gen_z.weight_u",
                 "generator.gen_z.weight_v", "generator.gen_z.bias", "generator.layers.0.bn_0.scale.weight_orig",
                 "generator.layers.0.bn_0.offset.weight_orig", "generator.layers.0.bn_0.running_means",
                 "generator.layers.0.conv_0.weight_orig", "generator.layers.1.snconv1x1_theta.weight_orig",
                 "generator.layers.1.gamma", "generator.bn.running_vars", "generator.bn.weight",
                 "generator.conv_to_rgb.weight_orig"]:  # fmt: skip
        assert name in names, name
    deep = BigGANGenerator(BigGANConfig(**{**TINY_BIGGAN, "deep": True, "embed_dim": 24}))
    block = {k.split(".", 3)[3].split(".")[0] for k in deep.state_dict() if k.startswith("generator.layers.0.")}
    assert block == {"bn_0", "bn_1", "bn_2", "bn_3", "conv_0", "conv_1", "conv_2", "conv_3"}
    assert deep.generator.gen_z.weight_orig.shape[1] == 48  # cat(z, embedding) in BigGAN-deep
    assert deep.generator.layers[0].bn_0.running_means.shape == (5, 32)


def test_hierarchical_latents_reach_every_block():
    G = make_tiny_biggan()
    z, c = torch.randn(2, 24), torch.tensor([0, 1])
    base = G(z, c)
    for chunk in range(3):  # gen_z, block 0, block 1
        z2 = z.clone()
        z2[:, chunk * 8 : (chunk + 1) * 8] += 1.0
        assert (G(z2, c) - base).abs().max() > 1e-3, chunk


def test_class_vectors_and_ids_agree_and_lerp_the_embedding():
    G = make_tiny_biggan()
    z = torch.randn(2, 24)
    onehot = torch.nn.functional.one_hot(torch.tensor([2, 0]), 3).float()
    assert torch.equal(G(z, torch.tensor([2, 0])), G(z, onehot))
    mix = 0.3 * onehot[0] + 0.7 * onehot[1]
    assert torch.allclose(G.embed(mix[None]), 0.3 * G.embed(torch.tensor([2])) + 0.7 * G.embed(torch.tensor([0])))


def test_truncated_latents_stay_inside_the_threshold_and_are_deterministic():
    for seed in range(50):
        z = truncated_normal_from_seed(seed, 128, TRUNCATION_THRESHOLD)
        assert float(z.abs().max()) <= TRUNCATION_THRESHOLD
        assert torch.equal(z, truncated_normal_from_seed(seed, 128, TRUNCATION_THRESHOLD))
        assert float(biggan_latent(seed, 128, 0.4).abs().max()) <= 0.8 + 1e-6
    assert float(truncated_normal_from_seed(3, 10_000, 0.5).abs().max()) <= 0.5
    plain = np.random.RandomState(7).randn(128)
    inside = np.abs(plain) <= 2
    assert np.allclose(truncated_normal_from_seed(7, 128, 2.0).numpy()[inside], plain[inside])  # only outliers move


def test_class_changes_the_image_and_class_plus_seed_fixes_it(G):
    a = sample(G, seeds=[1], **{"class": "circle"}).images
    assert np.array_equal(a, sample(G, seeds=[1], **{"class": 0}).images)
    assert np.array_equal(a, G.sample(seeds=[1], **{"class": "CIRCLE"}).images)
    assert not np.array_equal(a, sample(G, seeds=[1], **{"class": "square"}).images)
    assert not np.array_equal(a, sample(G, seeds=[2], **{"class": "circle"}).images)


def test_per_row_truncation_in_one_batch_equals_separate_calls(G):
    plans = [plan(G, seeds=[3, 4], truncation_psi=psi, **{"class": k}) for psi, k in [(1.0, 0), (0.3, 1), (0.7, 2)]]
    together = np.concatenate(render(G, plans, batch_size=16))
    alone = np.concatenate([render(G, [p], batch_size=16)[0] for p in plans])
    assert np.array_equal(together, alone)
    assert not np.array_equal(together[0:2], render(G, [plan(G, seeds=[3, 4], truncation_psi=0.3,
                                                             **{"class": 0})])[0])  # fmt: skip


def test_batch_size_invariance(G):
    req = {"seeds": list(range(7)), "class": 1, "truncation_psi": 0.6}
    a = sample(G, req, batch_size=7).images
    assert np.array_equal(a, sample(G, req, batch_size=1).images)
    assert np.array_equal(a, sample(G, req, batch_size=3).images)


def test_classes_grid_is_class_by_row(G):
    r = sample(G, seeds=[5, 6], classes=["triangle", 0], grid=True)
    assert [(p["class"], p["seeds"][0]) for p in r.params] == [(2, 5), (2, 6), (0, 5), (0, 6)]
    assert r.request.default_cols() == 2
    one = sample(G, seeds=[6], **{"class": 0}).images[0]
    assert np.array_equal(r.images[3], one)


def test_class_and_seed_interpolation(G):
    r = sample(G, seeds=[1], interpolate={"to_class": "square", "steps": 3}, **{"class": "circle"})
    assert np.array_equal(r.images[0], sample(G, seeds=[1], **{"class": 0}).images[0])
    assert np.array_equal(r.images[-1], sample(G, seeds=[1], **{"class": 1}).images[0])
    assert r.params[1]["interpolate"] == {"to_class": 1, "steps": 3, "space": "z"} and r.params[1]["t"] == 0.5
    both = sample(G, seeds=[1], interpolate={"to_seed": 9, "to_class": 2, "steps": 4}, truncation_psi=0.5,
                  **{"class": 0})  # fmt: skip
    assert np.array_equal(both.images[-1], sample(G, seeds=[9], truncation_psi=0.5, **{"class": 2}).images[0])
    p = plan(G, seeds=[1], interpolate={"to_seed": 9, "steps": 5}, truncation_psi=0.5, **{"class": 0})
    assert float(p.rows["z"].abs().max()) <= 1.0 + 1e-6  # lerped z stays inside psi * threshold


@pytest.mark.parametrize(
    "body, field",
    [
        ({"seeds": [1], "class": "hexagon"}, "class"),
        ({"seeds": [1], "class": 3}, "class"),
        ({"seeds": [1], "classes": [0, "hexagon"]}, "classes[1]"),
        ({"seeds": [1], "class": 0, "interpolate": {"to_class": "nope"}}, "interpolate.to_class"),
        ({"seeds": [1], "class": 0, "interpolate": {"steps": 3}}, "interpolate"),
        ({"seeds": [1], "class": 0, "truncation_psi": 0.0}, "truncation_psi"),
        ({"seeds": [1], "class": 0, "truncation_psi": 1.5}, "truncation_psi"),
        ({"seeds": [1], "class": 0, "noise_mode": "const"}, "noise_mode"),
        ({"seeds": [1], "class": 0, "classes": [1]}, ""),
    ],
)
def test_bad_requests_name_the_field(G, body, field):
    with pytest.raises(RequestError) as e:
        plan(G, body)
    assert e.value.field == field, e.value


def test_params_record_the_settings_and_describe(G):
    r = sample(G, seeds=[2], truncation_psi=0.5, **{"class": "square"})
    assert r.params == [{"model": "tiny-biggan", "truncation_psi": 0.5, "class": 1, "seeds": [2]}]
    d = describe(G)
    assert d["family"] == "biggan" and d["classes"] == CLASSES and d["truncation"]["threshold"] == 2.0
    assert {"class", "classes", "interpolate", "truncation_psi"} <= set(d["request_schema"]["properties"])


def test_standing_statistics_depend_on_truncation():
    G = make_tiny_biggan()
    bn = G.generator.layers[0].bn_0
    assert not torch.allclose(bn.running_vars[0], bn.running_vars[-1])
    assert torch.all(bn.running_vars[-1] > 0)
