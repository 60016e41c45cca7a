"""`python -m training.from_onnx MODEL.onnx --out CKPT.pt`: a training checkpoint from an rsir ONNX model,
so that a bundled model (shipped as ONNX only) can be fine-tuned: `training.fit --init CKPT.pt --freeze-bn`.

The architecture comes from the model's rsir metadata (its training configuration). The exporter folded
every BatchNorm into the convolution before it, so the statistics are gone: each convolution gets the
folded weights, and its BatchNorm becomes an affine identity plus the folded bias (running mean 0,
running variance 1 - eps, weight 1). The network computes exactly what the ONNX file does, as long as
its BatchNorm layers stay in eval mode, which is what --freeze-bn does; the checkpoint's meta says
`batchnorm_folded` and training.fit refuses it without that flag. Parity with onnxruntime is checked
before the checkpoint is written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .models import architecture_meta, build_net

FP16_SUFFIX = "__fp16"  # initializers stored in fp16 behind a Cast (export/storage.py)
MIN_COSINE = 0.9999


def read_metadata(model) -> dict:
    props = {p.key: p.value for p in model.metadata_props}
    if "rsir.training" not in props:
        raise SystemExit("the model has no rsir.training metadata: only models exported by rsir can be rebuilt")
    return props


def meta_from_metadata(props: dict, source: Path) -> dict:
    """The checkpoint meta of the model the metadata describes (architecture, contract, card)."""
    training = json.loads(props["rsir.training"])
    cfg = training["config"]
    arch = architecture_meta(cfg["backbone"], cfg["head"], cfg["pooling"], int(props["rsir.embedding_dim"]),
                             int(props["rsir.input_size"]), int(props["rsir.bands"]),
                             {"reduction": cfg.get("attention_reduction", 1)} if cfg["head"] == "dual_attention"
                             else {}, cfg.get("gem_p", 3.0))
    return checkpoint.json_safe({
        "format_version": 1, "name": props["rsir.name"], **arch,
        "mean": json.loads(props["rsir.mean"]), "std": json.loads(props["rsir.std"]),
        "band_indices": cfg.get("bands", list(range(1, int(props["rsir.bands"]) + 1))),
        "backbone_weights": cfg.get("weights", "none"), "training": training, "batchnorm_folded": True,
        "from_onnx": {"file": source.name, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
        # The footprint travels with the weights: a re-export of the checkpoint keeps the tiles it was measured on.
        **({"tile_size": int(props["rsir.tile_size"])} if "rsir.tile_size" in props else {}),
    })


def initializers(model) -> dict[str, np.ndarray]:
    """Every weight of the graph as float32, keyed by the name its consumers read (Casts followed)."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return {name: np.asarray(value, np.float32) for name, value in values.items()}


def call_order(net: nn.Module, input_size: int, bands: int) -> list[nn.Module]:
    """The Conv2d and BatchNorm2d modules of the network in the order a forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda module, args, out: order.append(module))
             for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, bands, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def load_folded_weights(net: nn.Module, model, meta: dict) -> None:
    """Fill `net` from the ONNX graph: named weights by name, folded convolutions by call order."""
    values = initializers(model)
    names = {module: name for name, module in net.named_modules()}
    state = net.state_dict()
    filled: set[str] = set()
    # Weights the exporter kept under their module's name ("net.head.j.weight__fp16").
    for onnx_name, value in values.items():
        key = onnx_name.removesuffix(FP16_SUFFIX).removeprefix("net.")
        if key in state and tuple(state[key].shape) == value.shape:
            state[key] = torch.from_numpy(value.copy())
            filled.add(key)
    # Convolutions in graph order, against the modules' call order; a BatchNorm after a convolution was
    # folded into it.
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    modules = call_order(net, meta["input_size"], meta["bands"])
    called_next = dict(zip(modules, modules[1:]))
    conv_modules = [m for m in modules if isinstance(m, nn.Conv2d)]
    if len(convs) != len(conv_modules):
        raise SystemExit(f"the graph has {len(convs)} convolutions, the network {len(conv_modules)}: "
                         "not the architecture its metadata describes")
    for node, module in zip(convs, conv_modules):
        name = names[module]
        weight = values[node.input[1]]
        if tuple(module.weight.shape) != weight.shape:
            raise SystemExit(f"{name}: graph weight {weight.shape} against {tuple(module.weight.shape)}")
        state[f"{name}.weight"] = torch.from_numpy(weight.copy())
        filled.add(f"{name}.weight")
        bias = torch.from_numpy(values[node.input[2]].copy()) if len(node.input) > 2 else None
        follower = called_next.get(module)
        if isinstance(follower, nn.BatchNorm2d):
            bn = names[follower]
            state[f"{bn}.weight"] = torch.ones_like(state[f"{bn}.weight"])
            state[f"{bn}.bias"] = bias if bias is not None else torch.zeros_like(state[f"{bn}.bias"])
            state[f"{bn}.running_mean"] = torch.zeros_like(state[f"{bn}.running_mean"])
            state[f"{bn}.running_var"] = torch.full_like(state[f"{bn}.running_var"], 1.0 - follower.eps)
            filled.update(f"{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                "num_batches_tracked"))
        elif bias is not None:
            state[f"{name}.bias"] = bias
            filled.add(f"{name}.bias")
    missing = sorted(set(state) - filled)
    if missing:
        raise SystemExit(f"no weights in the graph for {missing[:5]} ({len(missing)} tensors)")
    net.load_state_dict(state)


def parity(net: nn.Module, path: Path, input_size: int, bands: int, count: int = 16) -> float:
    """Smallest cosine between the rebuilt network's and onnxruntime's embeddings of random images."""
    import onnxruntime as ort

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(count, bands, input_size, input_size))
                         .astype(np.float32))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        rebuilt = net.eval()(x).numpy()
    cosine = (reference * rebuilt).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(rebuilt, axis=1))
    return float(cosine.min())


def rebuild(source: Path) -> tuple[dict, float]:
    """The checkpoint ({"meta", "state_dict"}) of an rsir ONNX model, checked against onnxruntime, and the
    parity (min cosine) it passed: what convert writes, and what `training.fit --init MODEL.onnx` starts from."""
    import onnx

    source = Path(source)
    model = onnx.load(str(source))
    meta = meta_from_metadata(read_metadata(model), source)
    net = build_net(meta, weights="none")
    load_folded_weights(net, model, meta)
    cosine = parity(net, source, meta["input_size"], meta["bands"])
    if cosine < MIN_COSINE:
        raise SystemExit(f"{source}: rebuilt network disagrees with the ONNX model (min cosine {cosine:.6f})")
    return {"meta": meta, "state_dict": net.state_dict()}, cosine


def read_meta(source: Path) -> dict:
    """The checkpoint meta an rsir ONNX model describes (its metadata only: no weights read, no parity)."""
    import onnx

    return meta_from_metadata(read_metadata(onnx.load(str(source), load_external_data=False)), Path(source))


def convert(source: Path, out: Path) -> float:
    """Write the checkpoint; returns the parity (min cosine) it passed."""
    state, cosine = rebuild(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_atomic(state, out)
    return cosine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an ONNX model exported by rsir (e.g. a bundled one)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    args = parser.parse_args(argv)
    cosine = convert(args.model, args.out)
    print(f"{args.out}: rebuilt from {args.model}, min cosine against onnxruntime {cosine:.6f}; "
          "fine-tune with training.fit --init it --freeze-bn")


if __name__ == "__main__":
    main()
