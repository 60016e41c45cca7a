"""The augmentations for other sensors and ground sample distances: coarser GSD, zoom, blur, band gains,
haze; all off by default, so the default batches are the ones of the bundled model's recipe."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training import fit
from training.config import parse_config
from training.data.augment import (
    AugmentSettings,
    add_haze,
    augment,
    band_gain,
    blur,
    coarsen,
    colour_jitter,
    degrade,
    gaussian_kernels,
    normalize,
    sample_geometry,
    to_unit,
    warp,
)
from training.data.folder import read_image, square_resize

from .conftest import SCENES, TINY

ON = AugmentSettings(gsd_range=(1.0, 3.0), blur_sigma=1.0, band_jitter=0.1, haze=0.3, degrade_p=1.0)


def _scenes(size: int = 64) -> torch.Tensor:
    """Four real AID scenes (tests/data/scenes) as float (4, 3, size, size) in 0-1."""
    paths = [sorted((SCENES / c).glob("*.jpg"))[0] for c in ("Beach", "Forest", "Parking", "StorageTanks")]
    return to_unit(torch.stack([square_resize(read_image(p, (1, 2, 3)), size) for p in paths]))


def _detail(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontal neighbours, per image: fine detail."""
    return (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))


def test_defaults_are_off_draw_nothing_and_keep_the_recipe():
    x = _scenes()
    g = torch.Generator().manual_seed(3)
    assert torch.equal(degrade(x, AugmentSettings(), g), x)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(3).get_state())  # no random numbers drawn
    # augment() with the defaults is exactly crop/rotate/flip + colour jitter + normalisation, as before.
    u8 = (x * 255).round().to(torch.uint8)
    mean, std = torch.tensor([0.4, 0.4, 0.37]), torch.tensor([0.2, 0.18, 0.18])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = warp(to_unit(u8), sample_geometry(4, AugmentSettings(), g1))
    expected = normalize(colour_jitter(expected, 0.2, g1), mean, std)
    assert torch.equal(augment(u8, mean, std, AugmentSettings(), g2), expected)
    # Turned on, the same seed gives other batches, still in the normalised 0-1 range.
    on = augment(u8, mean, std, ON, torch.Generator().manual_seed(5))
    assert not torch.allclose(on, expected)
    assert on.min() >= ((0 - mean) / std).min() - 1e-5 and on.max() <= ((1 - mean) / std).max() + 1e-5


def test_coarser_gsd_matches_a_lower_resolution_image_and_loses_detail():
    x = _scenes(128)
    g = torch.Generator().manual_seed(0)
    # A fixed factor 2: the image resized to 64 px and back, as if taken at twice the ground sample distance.
    twice = coarsen(x, (2.0, 2.0), 1.0, g)
    low = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(twice, F.interpolate(low, size=(128, 128), mode="bilinear", align_corners=False), atol=1e-6)
    assert (_detail(twice) < 0.8 * _detail(x)).all()
    thrice = coarsen(x, (3.0, 3.0), 1.0, g)
    assert (_detail(thrice) < _detail(twice)).all()
    # Coarsening keeps the scene: low frequencies (8x8 block means) barely move.
    assert (F.avg_pool2d(thrice, 16) - F.avg_pool2d(x, 16)).abs().max() < 0.05
    # Off (factor range 1-1) or with probability 0: untouched.
    assert torch.equal(coarsen(x, (1.0, 1.0), 1.0, g), x)
    assert torch.equal(coarsen(x, (1.0, 3.0), 0.0, g), x)
    # Random factors in 1-3: each image somewhere between untouched and three times coarser.
    many = x.repeat(8, 1, 1, 1)
    mixed = _detail(coarsen(many, (1.0, 3.0), 1.0, g))
    reference = _detail(coarsen(many, (3.0, 3.0), 1.0, g))
    assert (mixed <= _detail(many) + 1e-6).all() and (mixed >= reference - 1e-6).all()
    assert len({round(float(v), 4) for v in mixed}) > 8  # the factors differ between copies


def test_wider_crop_scale_zooms_in():
    g = torch.Generator().manual_seed(0)

    def areas(scale):
        theta = sample_geometry(2000, AugmentSettings(crop_scale=scale, rot90=False), g)
        return theta[:, :, :2].det().abs()  # sampled area / image area

    default, wide = areas((0.5, 1.0)), areas((0.2, 1.0))
    assert default.min() >= 0.5 - 1e-4 and wide.min() >= 0.2 - 1e-4
    assert (wide < 0.3).float().mean() > 0.05 and wide.median() < default.median()
    # A 0.2 crop of a real scene, resampled to full size, shows it zoomed in about 2.2 times: less detail
    # per pixel than the full-view image.
    x = _scenes(128)
    zoom = torch.tensor([[math.sqrt(0.2), 0, 0], [0, math.sqrt(0.2), 0]]).expand(4, 2, 3)
    assert (_detail(warp(x, zoom)) < _detail(x)).all()


def test_gaussian_blur_has_the_drawn_sigma_and_keeps_the_mean():
    k = gaussian_kernels(torch.tensor([0.0, 1.0, 2.0]), 6)
    t = torch.arange(-6, 7, dtype=torch.float32)
    assert torch.allclose(k.sum(dim=1), torch.ones(3))
    assert k[0, 6] == 1.0                                               # sigma 0: identity
    assert torch.allclose((k[1:] * t ** 2).sum(dim=1).sqrt(), torch.tensor([1.0, 2.0]), atol=0.02)
    # A point of light spreads into a Gaussian of the sigma drawn (at most max_sigma).
    impulse = torch.zeros(16, 1, 25, 25)
    impulse[:, :, 12, 12] = 1.0
    out = blur(impulse, 1.5, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.ones(16), atol=1e-5)
    column = out[:, 0].sum(dim=1)                                       # (16, 25) marginal profile
    sigma = (column * torch.arange(-12, 13.0) ** 2).sum(dim=1).sqrt()
    assert (sigma <= 1.5 + 0.02).all() and sigma.max() > 0.7 and sigma.std() > 0.1
    # Real scenes: detail drops, the mean stays.
    x = _scenes()
    blurred = blur(x, 1.0, 1.0, torch.Generator().manual_seed(1))
    assert (_detail(blurred) <= _detail(x)).all() and (_detail(blurred) < 0.9 * _detail(x)).any()
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=2e-3)
    assert torch.equal(blur(x, 0.0, 1.0, torch.Generator()), x) and torch.equal(blur(x, 1.0, 0.0, torch.Generator()), x)


def test_haze_blends_toward_a_bright_airlight():
    x = _scenes()
    hazy = add_haze(x, 0.4, 1.0, torch.Generator().manual_seed(0))
    # Per image: hazy = (1 - t) x + t A with t in 0-0.4 and A in 0.75-1, so contrast shrinks by (1 - t) and
    # every pixel moves toward the bright airlight.
    ratio = hazy.std(dim=(2, 3)) / x.std(dim=(2, 3))
    assert (ratio >= 0.6 - 1e-4).all() and (ratio <= 1 + 1e-4).all() and (ratio < 0.97).any()
    assert (hazy.amin(dim=(2, 3)) >= x.amin(dim=(2, 3)) - 1e-6).all()
    assert (hazy.mean(dim=(1, 2, 3)) > x.mean(dim=(1, 2, 3)) - 1e-6).all() and hazy.max() <= 1.0
    # Black becomes the airlight's colour scaled by t, white stays near white.
    black = add_haze(torch.zeros(64, 3, 2, 2), 0.4, 1.0, torch.Generator().manual_seed(1))
    assert black.max() <= 0.4 + 1e-6 and black.max() > 0.3
    assert torch.equal(add_haze(x, 0.0, 1.0, torch.Generator()), x)
    assert torch.equal(add_haze(x, 0.4, 0.0, torch.Generator()), x)


def test_band_gain_changes_each_band_apart_within_its_range():
    x = torch.full((200, 3, 4, 4), 0.5)
    out = band_gain(x, 0.2, 1.0, torch.Generator().manual_seed(0))
    gain = out[:, :, 0, 0] / 0.5
    assert gain.min() >= 0.8 - 1e-6 and gain.max() <= 1.2 + 1e-6
    assert gain.min() < 0.85 and gain.max() > 1.15
    assert (gain[:, 0] - gain[:, 1]).abs().mean() > 0.05  # the bands move apart: a colour shift
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))  # one gain per band, not per pixel
    half = band_gain(x, 0.2, 0.5, torch.Generator().manual_seed(0))
    untouched = (half == 0.5).all(dim=(1, 2, 3)).float().mean()
    assert 0.35 < untouched < 0.65
    # A stronger brightness/contrast/saturation jitter (--jitter) spans a wider range than the default.
    flat = torch.full((400, 3, 2, 2), 0.4)
    mild = colour_jitter(flat, 0.2, torch.Generator().manual_seed(0)).mean(dim=(1, 2, 3)) / 0.4
    strong = colour_jitter(flat, 0.4, torch.Generator().manual_seed(0)).mean(dim=(1, 2, 3)) / 0.4
    assert mild.min() >= 0.8 - 1e-5 and strong.min() < 0.65 and strong.max() > 1.35


def test_options_reach_the_training_loop(tmp_path, monkeypatch):
    cfg = parse_config(TINY)
    assert (cfg.gsd_range, cfg.blur_sigma, cfg.band_jitter, cfg.haze) == ((1.0, 1.0), 0.0, 0.0, 0.0)
    seen = []

    def spy(images, mean, std, settings, generator, angles=None):
        seen.append(settings)
        return augment(images, mean, std, settings, generator, angles)

    monkeypatch.setattr(fit, "augment", spy)
    cfg = parse_config(TINY + ["--out", str(tmp_path / "ood"), "--epochs", "1", "--head", "gap", "--loss",
                               "norm_softmax", "--gsd-range", "1", "3", "--blur-sigma", "1.5", "--band-jitter",
                               "0.1", "--haze", "0.3", "--degrade-p", "0.7", "--crop-scale", "0.2", "1",
                               "--jitter", "0.4"])
    run = fit.main(cfg)
    assert seen and seen[0] == AugmentSettings(crop_scale=(0.2, 1.0), jitter=0.4, gsd_range=(1.0, 3.0),
                                               blur_sigma=1.5, band_jitter=0.1, haze=0.3, degrade_p=0.7)
    saved = parse_config(["--config", str(run / "config.toml")])
    assert saved.gsd_range == (1.0, 3.0) and saved.haze == 0.3 and saved.degrade_p == 0.7
