"""What a training run is made of: the decoded split, the parts it trains (net, loss with its memory bank,
EMA encoder, optimiser, schedule), each epoch's batches, the bank's start and the test mAP.
training/fit.py runs the steps and keeps the run folder.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint
from .config import FitConfig
from .data.sampler import pk_batches, random_batches
from .data.split import Split
from .eval.extract import embed, torch_embedder
from .eval.report import mean_average_precision
from .losses import LossContext, LossSpec
from .meta import LOSS_SETTINGS
from .models import build_net
from .runtime import Runtime, broadcast
from .schedule import lr_factor


@dataclass(frozen=True)
class Decoded:
    """The split, decoded: uint8 (N, C, S, S) images on the training device, int64 labels."""

    split: Split
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator determined by (seed, epoch, stream): resuming at any epoch replays the same numbers."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2 ** 63))


def build_optimizer(cfg: FitConfig, net: nn.Module, criterion: nn.Module) -> torch.optim.Optimizer:
    """Two groups: the backbone at lr * backbone_lr_scale, everything else (head, pooling, projection,
    the loss's own parameters) at lr. Norm scales, biases and GeM's p get no weight decay."""
    groups = {}
    named = [("backbone." + n, p) for n, p in net.backbone.named_parameters()]
    named += [(n, p) for n, p in net.named_parameters() if not n.startswith("backbone.")]
    named += [("criterion." + n, p) for n, p in criterion.named_parameters()]
    for name, param in named:
        if not param.requires_grad:
            continue
        scale = cfg.backbone_lr_scale if name.startswith("backbone.") else 1.0
        decay = 0.0 if param.ndim <= 1 else cfg.weight_decay
        groups.setdefault((scale, decay), []).append(param)
    params = [{"params": ps, "lr": cfg.lr * s, "weight_decay": d} for (s, d), ps in groups.items()]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr)


def epoch_batches(cfg: FitConfig, spec: LossSpec, labels: torch.Tensor, epoch: int, rt: Runtime) -> list[torch.Tensor]:
    """This rank's batches of training-image indices for `epoch`."""
    gen = epoch_generator(cfg.seed, epoch, 0)
    images_per_batch = cfg.batch_size // copies_per_image(cfg, spec)
    if spec.sampler == "pk":
        return pk_batches(labels.cpu(), images_per_batch // cfg.pk_images, cfg.pk_images, gen, rt.world, rt.rank)
    return random_batches(len(labels), images_per_batch, gen, rt.world, rt.rank)


def copies_per_image(cfg: FitConfig, spec: LossSpec) -> int:
    return min(cfg.ri_copies, spec.rotations) if spec.rotations > 1 else 1


@torch.no_grad()
def init_bank(bank: nn.Module, net: nn.Module, data: Decoded, mean, std, cfg: FitConfig, rt: Runtime,
              rotations: int) -> None:
    """Fill the bank with the untrained network's embeddings of every training image (and rotated copy),
    so that SNCA's neighbourhoods are meaningful from the first step; rank 0's copy is shared."""
    fn = torch_embedder(net, rt.amp_dtype, rt.channels_last)
    for r in range(rotations):
        feats = embed(data.train, fn, mean, std, cfg.eval_batch_size, rt.device, r * 360.0 / rotations)
        slots = torch.arange(len(data.train), device=rt.device) * rotations + r
        bank.replace(slots, torch.from_numpy(feats).to(rt.device))
    broadcast(bank.vectors, rt)


def test_map(net: nn.Module, data: Decoded, mean, std, cfg: FitConfig, rt: Runtime) -> float:
    """Test-vs-test mAP (paper 000 eq. 9-12) on the test split."""
    emb = embed(data.test, torch_embedder(net, rt.amp_dtype, rt.channels_last), mean, std,
                cfg.eval_batch_size, rt.device)
    return mean_average_precision(emb, data.test_labels.cpu().numpy())


@dataclass
class Parts:
    """What a run trains and saves: the net (also behind DDP as `model`), the loss with its bank, the
    optional EMA encoder, the optimiser and its schedule."""

    net: nn.Module
    model: nn.Module
    criterion: nn.Module
    ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    @property
    def bank(self) -> nn.Module | None:
        return getattr(self.criterion, "bank", None)

    def state(self) -> dict:
        return {"state_dict": self.net.state_dict(), "criterion": self.criterion.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["state_dict"])
        self.criterion.load_state_dict(state["criterion"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def initial_net(cfg: FitConfig, arch: dict, init: dict | None) -> nn.Module:
    """The network training starts from: the backbone's --weights, or the whole --init checkpoint `init`."""
    if init is None:
        return build_net(arch, cfg.weights)
    differ = checkpoint.architecture_differences(init["meta"], arch)
    if differ:
        raise SystemExit(f"{cfg.init}: another architecture than this run's (checkpoint, run): {differ}")
    if init["meta"].get("batchnorm_folded") and not cfg.freeze_bn:
        raise SystemExit(f"{cfg.init}: its BatchNorm statistics were folded into the convolutions by the "
                         "ONNX export; fine-tune it with --freeze-bn")
    net = build_net(arch, "none")
    net.load_state_dict(init["state_dict"])
    return net


def freeze_batchnorm(net: nn.Module) -> None:
    """BatchNorm layers in eval mode: they use and keep their running statistics."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def build_parts(cfg: FitConfig, arch: dict, spec: LossSpec, data: Decoded, rt: Runtime,
                init: dict | None = None) -> Parts:
    net = initial_net(cfg, arch, init).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    criterion = spec.build(LossContext(data.train_labels.cpu(), len(data.split.classes), arch["embedding_dim"],
                                       {k: getattr(cfg, k) for k in LOSS_SETTINGS},
                                       torch.Generator().manual_seed(cfg.seed))).to(rt.device)
    ema = None
    if getattr(criterion, "bank", None) is not None and cfg.bank_update == "ema_encoder":
        ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = build_optimizer(cfg, net, criterion)
    steps_per_epoch = len(epoch_batches(cfg, spec, data.train_labels, 0, rt))
    if steps_per_epoch == 0 and cfg.epochs > 0:
        raise SystemExit(f"batch size {cfg.batch_size} x {rt.world} process(es) exceeds the "
                         f"{len(data.train)} training images: lower --batch-size")
    warmup, total = round(cfg.warmup_epochs * steps_per_epoch), steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    model = DistributedDataParallel(net, device_ids=[rt.device] if rt.device.type == "cuda" else None) \
        if rt.distributed else net
    return Parts(net, model, criterion, ema, optimizer, scheduler, scaler)
