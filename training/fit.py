"""`python -m training.fit --data DIR [...]`: train an rsir embedding model; see docs/training.md.

The run folder gets split.json (the stratified split), config.toml (feed it back with --config),
metrics.csv (+ tensorboard/), last.pt after every epoch and best.pt at the best test-split mAP.
Multi-GPU: `torchrun --nproc-per-node N -m training.fit ...`.
"""
from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint
from .config import FitConfig, parse_config, write_toml
from .data.augment import AugmentSettings, augment
from .data.folder import load_images, scan_folder
from .data.sampler import pk_batches, random_batches
from .data.split import Split, read_split, stratified_split, subsample_train, write_split
from .data.stats import band_stats
from .eval.extract import embed, torch_embedder
from .eval.report import mean_average_precision
from .logger import MetricsLog
from .losses import LossContext, LossSpec, loss_spec
from .models import architecture_meta, build_net
from .runtime import (Runtime, average_gradients, barrier, broadcast, gather, same_on_all_ranks,
                      setup_runtime, shutdown)
from .schedule import bank_momentum, lr_factor

# Settings a criterion may read (LossContext.settings).
LOSS_SETTINGS = ("sigma", "ri_lambda", "contrastive_margin", "triplet_margin", "softmax_temperature")


@dataclass(frozen=True)
class Decoded:
    """The split, decoded: uint8 (N, C, S, S) images on the training device, int64 labels."""

    split: Split
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator determined by (seed, epoch, stream): resuming at any epoch replays the same numbers."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2 ** 63))


def prepare_split(cfg: FitConfig, run_dir: Path, rt: Runtime) -> Split:
    """The run's own split.json when resuming, else --split, else a new stratified split (its training part
    cut to --train-per-class); saved in run_dir."""
    own = run_dir / "split.json"
    if cfg.resume and own.is_file():
        return read_split(own)
    if cfg.split:
        split = read_split(cfg.split)
    else:
        split = stratified_split(scan_folder(cfg.data, cfg.classes, cfg.limit_per_class),
                                 cfg.test_fraction, cfg.split_seed)
    split = subsample_train(split, cfg.train_per_class, cfg.split_seed)
    if rt.is_main:
        write_split(split, own)
    return split


def decode(cfg: FitConfig, split: Split, rt: Runtime) -> Decoded:
    """Decode both halves once; on CUDA the uint8 images then live in GPU memory (AID at 224 px: 1.5 GB)."""
    def load(items):
        images = load_images(cfg.data, [p for p, _ in items], cfg.bands, cfg.input_size, cfg.workers)
        return images.to(rt.device), torch.tensor([l for _, l in items], dtype=torch.long, device=rt.device)
    train, train_labels = load(split.train)
    test, test_labels = load(split.test)
    return Decoded(split, train, train_labels, test, test_labels)


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


def rotation_slots(index: torch.Tensor, rotations: int, copies: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(bank slots, rotation angles) of the samples made from a batch of image indices.

    Without rotation slots every image is one sample in its own slot, with random 90-degree turns.
    With R slots each image appears `copies` times, as distinct random copies r rotated by r * 360/R.
    """
    if rotations == 1:
        return index, None
    r = torch.stack([torch.randperm(rotations, generator=gen)[:copies] for _ in range(len(index))])
    slots = index.repeat_interleave(copies) * rotations + r.flatten().to(index.device)
    return slots, r.flatten().double() * (360.0 / rotations)


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


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, momentum: float) -> None:
    """ema <- momentum * ema + (1 - momentum) * net, parameters only (the EMA's BN statistics follow its own
    forward passes, as in MoCo and Kang's SNCA-CE code)."""
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)


def test_map(net: nn.Module, data: Decoded, mean, std, cfg: FitConfig, rt: Runtime) -> float:
    """Test-vs-test mAP (paper 000 eq. 9-12) on the test split."""
    emb = embed(data.test, torch_embedder(net, rt.amp_dtype, rt.channels_last), mean, std,
                cfg.eval_batch_size, rt.device)
    return mean_average_precision(emb, data.test_labels.cpu().numpy())


def init_lineage(init_meta: dict) -> dict:
    """What a fine-tuned model started from, for its card: the starting model's name, origin and training."""
    training = init_meta.get("training", {})
    return {"name": init_meta.get("name"), "from_onnx": init_meta.get("from_onnx"),
            "loss": training.get("loss", {}).get("name"), "epochs": training.get("epochs"),
            "metrics": training.get("metrics"), "init": training.get("init")}


def make_meta(cfg: FitConfig, arch: dict, mean, std, split: Split, rt: Runtime, metrics: dict,
              epochs_done: int, seconds: float, init_meta: dict | None = None) -> dict:
    """Everything to rebuild the network and fill the ONNX contract, plus the model card."""
    loss = {"name": cfg.loss, **{k: getattr(cfg, k) for k in LOSS_SETTINGS}}
    if cfg.loss.startswith("snca") or cfg.loss == "ri_snca":
        loss.update(bank_update=cfg.bank_update, bank_momentum=cfg.bank_momentum,
                    bank_milestones=cfg.bank_milestones, bank_init=cfg.bank_init)
    return checkpoint.json_safe({
        "format_version": 1, "name": cfg.run_name, **arch, "mean": mean, "std": std,
        "band_indices": cfg.bands, "backbone_weights": cfg.weights,
        "training": {
            "data": {"root": Path(cfg.data).name, "band_indices": cfg.bands, **split.describe()},
            "split": {"seed": split.seed, "test_fraction": split.test_fraction, "file": "split.json"},
            "loss": loss, "epochs": epochs_done, "metrics": metrics,
            "device": rt.describe(), "train_seconds": round(seconds, 1), "git": git_revision(),
            "config": dataclasses.asdict(cfg),
            **({"init": init_lineage(init_meta)} if init_meta else {}),
        },
        # Folded statistics stay folded while --freeze-bn keeps them: a further fine-tune needs it too.
        **({"batchnorm_folded": True} if init_meta and init_meta.get("batchnorm_folded") else {}),
    })


def _progress(items: Sequence, enabled: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on bare GPU images
        return items
    return tqdm(items, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


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


def train_epoch(p: Parts, epoch: int, cfg: FitConfig, spec: LossSpec, data: Decoded, mean, std,
                rt: Runtime, log: MetricsLog) -> dict:
    """One epoch of steps; returns the CSV row (mean losses, learning rate, bank momentum, speed)."""
    t0 = time.time()
    momentum = bank_momentum(epoch, cfg.epochs, cfg.bank_momentum, cfg.bank_milestones)
    gen = epoch_generator(cfg.seed, epoch, 1 + rt.rank)
    mean_t, std_t = torch.tensor(mean, device=rt.device), torch.tensor(std, device=rt.device)
    aug = AugmentSettings(crop_scale=tuple(cfg.crop_scale), jitter=cfg.jitter, gsd_range=tuple(cfg.gsd_range),
                          blur_sigma=cfg.blur_sigma, band_jitter=cfg.band_jitter, haze=cfg.haze,
                          degrade_p=cfg.degrade_p)
    copies = copies_per_image(cfg, spec)
    autocast = dict(device_type=rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None)
    p.net.train()
    if p.ema is not None:
        p.ema.train()
    if cfg.freeze_bn:
        freeze_batchnorm(p.net)
        if p.ema is not None:
            freeze_batchnorm(p.ema)
    sums: dict[str, float] = {}
    batches = epoch_batches(cfg, spec, data.train_labels, epoch, rt)
    bar = _progress(batches, rt.is_main, f"epoch {epoch + 1}/{cfg.epochs}")
    for index in bar:
        index = index.to(rt.device)
        slots, angles = rotation_slots(index, spec.rotations, copies, gen)
        images = data.train[index].repeat_interleave(copies, dim=0)
        labels = data.train_labels[index].repeat_interleave(copies)
        x = augment(images, mean_t, std_t, aug, gen, angles)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(**autocast):
            z = p.model(x, normalize=False)
        loss, parts = p.criterion(z.float(), labels, slots)
        p.optimizer.zero_grad(set_to_none=True)
        p.scaler.scale(loss).backward()
        average_gradients(p.criterion.parameters(), rt)
        p.scaler.step(p.optimizer)
        p.scaler.update()
        p.scheduler.step()
        if p.bank is not None:
            # After the step and outside autograd: an update that AMP, accumulation and DDP all tolerate.
            with torch.no_grad():
                if p.ema is None:
                    p.bank.momentum_update(gather(slots, rt), gather(z.detach().float(), rt), momentum)
                else:
                    with torch.autocast(**autocast):
                        keys = p.ema(x, normalize=False).float()
                    p.bank.replace(gather(slots, rt), gather(keys, rt))
                    ema_update(p.ema, p.net, cfg.ema_momentum)
        value = float(loss.detach())
        for key, v in {"loss": value, **{f"loss_{k}": float(t) for k, t in parts.items()}}.items():
            sums[key] = sums.get(key, 0.0) + v
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{value:.4f}")
        log.step("train/loss_step", value, p.scheduler.last_epoch)
    if p.bank is not None and not same_on_all_ranks(p.bank.vectors, rt):
        raise RuntimeError("memory banks diverged between DDP ranks")
    seconds = time.time() - t0
    return {"epoch": epoch + 1, "step": p.scheduler.last_epoch, "lr": max(p.scheduler.get_last_lr()),
            "bank_momentum": momentum if p.bank is not None and p.ema is None else None, "seconds": seconds,
            "images_per_s": sum(len(b) for b in batches) * copies * rt.world / max(seconds, 1e-9),
            **{k: v / max(1, len(batches)) for k, v in sums.items()}}


def main(cfg: FitConfig) -> Path:
    """Train as configured; returns the run folder."""
    started = time.time()  # --time-limit counts everything, decoding included
    rt = setup_runtime(cfg.device, cfg.amp, cfg.channels_last)
    run_dir = cfg.run_dir
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "last.pt").exists() and not cfg.resume:
            raise SystemExit(f"{run_dir} already holds a run: pass --resume, or another --out")
        if cfg.resume and not (run_dir / "last.pt").exists():
            raise SystemExit(f"{run_dir}/last.pt not found: nothing to resume")
        print(f"rsir training, git {git_revision()}, {rt.describe()}")
        print("\n".join(f"  {k} = {v}" for k, v in dataclasses.asdict(cfg).items()), flush=True)
        write_toml(cfg, run_dir / "config.toml")
    barrier(rt)

    torch.manual_seed(cfg.seed)
    split = prepare_split(cfg, run_dir, rt)
    t0 = time.time()
    data = decode(cfg, split, rt)
    mean, std = band_stats(data.train.cpu())
    if rt.is_main:
        print(f"decoded {len(data.train)} training and {len(data.test)} test images of {len(split.classes)} "
              f"classes in {time.time() - t0:.1f} s; mean {np.round(mean, 4).tolist()}, "
              f"std {np.round(std, 4).tolist()}", flush=True)

    arch = architecture_meta(cfg.backbone, cfg.head, cfg.pooling, cfg.embedding_dim, cfg.input_size,
                             len(cfg.bands), {"reduction": cfg.attention_reduction}
                             if cfg.head == "dual_attention" else {}, cfg.gem_p)
    spec = loss_spec(cfg.loss)
    init = checkpoint.load(Path(cfg.init)) if cfg.init else None
    p = build_parts(cfg, arch, spec, data, rt, init)
    init_meta = init["meta"] if init is not None else None
    if init_meta is not None:
        mean, std = init_meta["mean"], init_meta["std"]  # what the network was trained to be fed

    start_epoch, best, best_epoch, last_map, seconds = 0, -1.0, -1, None, 0.0
    if cfg.resume:
        state = checkpoint.load(run_dir / "last.pt", rt.device)
        differ = checkpoint.architecture_differences(state["meta"], arch)
        if differ:
            raise SystemExit(f"{run_dir}/last.pt was trained with another architecture (checkpoint, run): {differ}")
        p.restore(state)
        start_epoch, best, best_epoch = state["epoch"], state["best_map"], state["best_epoch"]
        mean, std = state["meta"]["mean"], state["meta"]["std"]
        last_map = state["meta"]["training"]["metrics"]["test_map"]
        seconds = state["meta"]["training"]["train_seconds"]
        if rt.is_main:
            print(f"resumed {run_dir}/last.pt at epoch {start_epoch}", flush=True)
    elif p.bank is not None and cfg.bank_init == "features":
        init_bank(p.bank, p.net, data, mean, std, cfg, rt, spec.rotations)

    log = MetricsLog(run_dir, ["epoch", "step", "lr", "loss", *(f"loss_{n}" for n in p.criterion.parts),
                               "bank_momentum", "test_map", "seconds", "images_per_s"], rt.is_main)

    def save(epoch: int) -> None:
        """last.pt (and best.pt when this epoch holds the best test mAP), main process only."""
        metrics = {"test_map": last_map, "best_test_map": best if best >= 0 else None,
                   "best_epoch": best_epoch if best >= 0 else None}
        state = {"meta": make_meta(cfg, arch, mean, std, split, rt, metrics, epoch, seconds, init_meta), **p.state(),
                 "epoch": epoch, "best_map": best, "best_epoch": best_epoch}
        checkpoint.save_atomic(state, run_dir / "last.pt")
        if best_epoch == epoch and best >= 0:
            checkpoint.copy_atomic(run_dir / "last.pt", run_dir / "best.pt")

    if start_epoch == 0:
        if rt.is_main:
            last_map = test_map(p.net, data, mean, std, cfg, rt)
            start = f"from {Path(cfg.init).name}" if cfg.init else "untrained"
            print(f"epoch 0 ({start}): test mAP {last_map:.4f}", flush=True)
            log.epoch({"epoch": 0, "step": 0, "test_map": last_map})
            if cfg.epochs == 0:
                best, best_epoch = last_map, 0
            save(0)
        barrier(rt)

    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.time()
        row = train_epoch(p, epoch, cfg, spec, data, mean, std, rt, log)
        seconds += row["seconds"]
        done = row["epoch"]
        evaluate_now = done == cfg.epochs or (cfg.eval_every > 0 and done % cfg.eval_every == 0)
        if rt.is_main:
            if evaluate_now:
                last_map = row["test_map"] = test_map(p.net, data, mean, std, cfg, rt)
                if last_map > best:
                    best, best_epoch = last_map, done
            log.epoch(row)
            print(f"epoch {done}/{cfg.epochs}: loss {row.get('loss', float('nan')):.4f}"
                  + (f", test mAP {last_map:.4f}" if evaluate_now else "") + f", {row['seconds']:.1f} s",
                  flush=True)
            save(done)
        barrier(rt)
        # One more epoch (training, evaluation, saving) as long as the last one, with a margin, must fit.
        cycle = time.time() - t_epoch
        out_of_time = cfg.time_limit > 0 and time.time() - started + 1.2 * cycle > cfg.time_limit * 60
        if done < cfg.epochs and ((cfg.stop_after and done >= cfg.stop_after) or out_of_time):
            if rt.is_main:
                print(f"stopping after epoch {done} of {cfg.epochs}; continue with --resume --out {run_dir}")
            break
    log.close()
    shutdown(rt)
    return run_dir


def cli(argv: Sequence[str] | None = None) -> None:
    main(parse_config(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
