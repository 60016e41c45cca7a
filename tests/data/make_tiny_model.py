"""Write tests/data/tiny_model.onnx: the small real ONNX model behind the `tiny_model` test fixture.

An untrained ResNet-18 layout at 1/16 width (torchvision BasicBlocks [2, 2, 2, 2] of 4, 8, 16, 32
channels, average pooling) with a linear layer to 512 dimensions, weights drawn from seed 0 the way
torchvision initialises a ResNet; 64 px RGB input, ImageNet mean/std, L2-normalised output. It goes
through the real exporter (export.onnx, with its parity check), so the file carries the rsir model
contract like any released model; about 250 KB, and a 64 px tile costs ~1/250 of a ResNet-18's work.

    .venv/bin/python tests/data/make_tiny_model.py [--out tests/data/tiny_model.onnx]

tests/export/test_tiny_model.py (marked slow) checks that this script still writes the committed
file's contract and graph interface; the bytes may differ between torch versions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from rsir_qgis_plugin.core.model import ModelContract  # noqa: E402

OUT = Path(__file__).with_name("tiny_model.onnx")
SEED = 0
WIDTHS = (4, 8, 16, 32)  # ResNet-18's 64, 128, 256, 512 divided by 16
CONTRACT = ModelContract(
    name="resnet18-untrained-test", embedding_dim=512, input_size=64, bands=3,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    training={"data": "none (untrained, for tests)",
              "architecture": "ResNet-18 layout at 1/16 width, linear to 512",
              "made_by": "tests/data/make_tiny_model.py"})


def _stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    return nn.Sequential(BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes))


def build_net(seed: int = SEED) -> nn.Module:
    """The untrained net, (N, 3, 64, 64) normalised images -> (N, 512), in eval mode."""
    torch.manual_seed(seed)
    stem = [nn.Conv2d(3, WIDTHS[0], 7, 2, 3, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1)]
    stages = [_stage(WIDTHS[max(i - 1, 0)], width, 1 if i == 0 else 2) for i, width in enumerate(WIDTHS)]
    net = nn.Sequential(*stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(WIDTHS[-1], CONTRACT.embedding_dim))
    for module in net.modules():  # as torchvision's ResNet does
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net.eval()


def make(out: Path = OUT) -> Path:
    """Export the net with CONTRACT to `out` through export.onnx and return the path."""
    from export.onnx import export_embedding_model

    return export_embedding_model(build_net(), CONTRACT, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the file to write (default: %(default)s)")
    path = make(parser.parse_args().out)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
