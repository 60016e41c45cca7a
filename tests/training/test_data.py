"""Datasets: scanning, reading (JPEG/PNG/multi-band GeoTIFF), the split, batches, augmentation, statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.augment import AugmentSettings, augment, colour_jitter, rotate, rotation_matrices, sample_geometry
from training.data.folder import load_images, read_image, scan_folder, square_resize
from training.data.sampler import pk_batches, random_batches
from training.data.split import read_split, stratified_split, subsample_train, write_split
from training.data.stats import band_stats


def test_scan_folder_lists_classes_and_images(scenes):
    folder = scan_folder(scenes)
    assert folder.classes == ("Beach", "Forest", "Parking", "StorageTanks")
    assert len(folder.paths) == 40 and folder.labels.count(2) == 10
    sub = scan_folder(scenes, ["Parking", "Beach"], limit_per_class=3)
    assert sub.classes == ("Parking", "Beach") and sub.labels == (0, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="Airport"):
        scan_folder(scenes, ["Airport"])


def test_split_is_stratified_seeded_and_per_class_stable(scenes, tmp_path):
    split = stratified_split(scan_folder(scenes), 0.2, seed=7)
    assert len(split.train) == 32 and len(split.test) == 8
    assert [sum(1 for _, label in split.test if label == c) for c in range(4)] == [2, 2, 2, 2]
    assert not set(split.train) & set(split.test)
    assert stratified_split(scan_folder(scenes), 0.2, seed=7) == split
    assert stratified_split(scan_folder(scenes), 0.2, seed=8).test != split.test
    # A class's split does not depend on which other classes take part.
    beach_only = stratified_split(scan_folder(scenes, ["Beach"]), 0.2, seed=7)
    assert [p for p, _ in beach_only.test] == [p for p, label in split.test if label == 0]
    write_split(split, tmp_path / "split.json")
    assert read_split(tmp_path / "split.json") == split


def test_train_subsample_keeps_the_test_set_and_is_seeded(scenes):
    split = stratified_split(scan_folder(scenes), 0.2, seed=7)
    small = subsample_train(split, 3, seed=7)
    assert small.test == split.test
    assert [sum(1 for _, label in small.train if label == c) for c in range(4)] == [3, 3, 3, 3]
    assert set(small.train) < set(split.train)
    assert subsample_train(split, 3, seed=7) == small and subsample_train(split, 3, seed=8) != small
    assert subsample_train(split, 0) is split and subsample_train(split, 100).train == split.train


def test_read_jpeg_png_and_multiband_geotiff(scenes, tmp_path):
    jpg = read_image(scenes / "Beach" / "beach_1.jpg", (1, 2, 3))
    assert jpg.shape == (3, 150, 150) and jpg.dtype == np.uint8
    assert np.array_equal(read_image(scenes / "Beach" / "beach_1.jpg", (3, 1)), jpg[[2, 0]])
    from PIL import Image

    Image.fromarray(np.full((10, 12), 200, np.uint8), mode="L").save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png", (1, 2, 3)).shape == (3, 10, 12)

    rasterio = pytest.importorskip("rasterio")
    data = np.stack([np.linspace(0, 1000 * (b + 1), 30 * 40).reshape(30, 40) for b in range(5)]).astype(np.uint16)
    with rasterio.open(tmp_path / "s2.tif", "w", driver="GTiff", width=40, height=30, count=5, dtype="uint16",
                       crs="EPSG:32633", transform=rasterio.transform.from_origin(500000, 4000000, 10, 10)) as dst:
        dst.write(data)
    got = read_image(tmp_path / "s2.tif", (4, 2))
    assert got.shape == (2, 30, 40) and got.dtype == np.uint8
    # 2-98 % stretch per band: the extremes saturate, the order of values is kept.
    assert got[0].min() == 0 and got[0].max() == 255 and np.all(np.diff(got[1].ravel().astype(int)) >= 0)
    with pytest.raises(ValueError, match="5 bands"):
        read_image(tmp_path / "s2.tif", (6,))


def test_square_resize_and_parallel_decoding(scenes):
    wide = np.zeros((3, 4, 8), np.uint8)
    wide[:, :, 2:6] = 100
    assert torch.equal(square_resize(wide, 4), torch.full((3, 4, 4), 100, dtype=torch.uint8))  # centre crop
    paths = [f"Forest/{p.name}" for p in sorted((scenes / "Forest").iterdir())[:4]]
    images = load_images(scenes, paths, (1, 2, 3), 32, workers=2)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, load_images(scenes, paths, (1, 2, 3), 32, workers=0))


def test_images_pass_through_a_models_tile_size_as_the_engine_reads_tiles(scenes):
    """A 160 px model with 128 px tiles sees scenes with 128 px of detail, upsampled (issue 22 item 2)."""
    paths = [f"Parking/{p.name}" for p in sorted((scenes / "Parking").iterdir())[:3]]
    direct = load_images(scenes, paths, (1, 2, 3), 160)
    footprint = load_images(scenes, paths, (1, 2, 3), 160, tile_size=128)
    assert footprint.shape == direct.shape == (3, 3, 160, 160)
    assert torch.equal(load_images(scenes, paths, (1, 2, 3), 160, tile_size=160), direct)
    # Same scene, less detail: the 150 px scenes cut to 128 px lose contrast between neighbouring pixels.
    def detail(x):
        return (x[..., 1:].float() - x[..., :-1].float()).abs().mean()
    assert (footprint.float() - direct.float()).abs().mean() < 12
    assert detail(footprint) < 0.8 * detail(direct)


def test_random_and_pk_batches():
    g = torch.Generator().manual_seed(0)
    ranks = [random_batches(23, 4, torch.Generator().manual_seed(0), world=2, rank=r) for r in range(2)]
    assert [len(b) for b in ranks] == [2, 2]
    seen = torch.cat([torch.cat(b) for b in ranks])
    assert len(seen) == 16 and len(seen.unique()) == 16
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    for batch in pk_batches(labels, p=2, k=4, generator=g):
        classes, counts = labels[batch].unique(return_counts=True)
        assert len(classes) == 2 and counts.tolist() == [4, 4]


def _corners(theta: torch.Tensor) -> torch.Tensor:
    pts = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    return torch.einsum("nij,kj->nki", theta.double(), pts.double())


def test_rotated_crops_never_leave_the_image():
    g = torch.Generator().manual_seed(0)
    for angles in (None, torch.full((200,), 45.0, dtype=torch.float64), torch.rand(200, dtype=torch.float64) * 360):
        theta = sample_geometry(200, AugmentSettings(crop_scale=(0.3, 1.0)), g, angles)
        assert _corners(theta).abs().max() <= 1 + 1e-5


def test_rotate_by_90_is_exact_and_by_45_samples_the_inscribed_square():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5) or \
        torch.allclose(rotate(x, 90), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, 360), x, atol=1e-5)
    for degrees in (45, 30, 135):
        corners = _corners(rotation_matrices(1, degrees))[0]
        assert corners.abs().max() <= 1 + 1e-6 and corners.abs().max(dim=1).values.min() >= 1 - 1e-6  # inscribed
    # A disc touching the image edges, dark corners: turned by 45 degrees the whole frame would bring the
    # dark corners (and the empty area beyond them) into view; the inscribed square stays on the disc.
    centres = (torch.arange(64) * 2 + 1) / 64 - 1  # pixel centres as grid_sample places them
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    disc = ((xx ** 2 + yy ** 2).sqrt() <= 1.0).float().expand(1, 1, 64, 64)
    assert disc[0, 0, 0, 0] == 0
    turned = rotate(disc, 45)
    assert turned.min() > 0.3 and turned.mean() > 0.99


def test_augment_output_and_colour_jitter_range():
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    mean, std = torch.tensor([0.5] * 3), torch.tensor([0.25] * 3)
    x = augment(u8, mean, std, AugmentSettings(), g)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and x.min() >= -2 - 1e-5 and x.max() <= 2 + 1e-5
    jittered = colour_jitter(torch.rand(8, 3, 4, 4), 0.2, g)
    assert jittered.min() >= 0 and jittered.max() <= 1
    assert torch.equal(colour_jitter(x, 0.0, g), x)


def test_band_stats_match_numpy():
    images = torch.randint(0, 256, (5, 2, 7, 9), dtype=torch.uint8)
    mean, std = band_stats(images, chunk=2)
    ref = images.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(ref.mean(axis=(0, 2, 3)).tolist())
    assert std == pytest.approx(ref.std(axis=(0, 2, 3)).tolist())
