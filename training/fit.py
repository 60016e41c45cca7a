"""`python -m training.fit --data DIR [...]`: train an rsir embedding model; see docs/training.md.

The run folder gets split.json (the stratified split), config.toml (feed it back with --config),
metrics.csv (+ tensorboard/), last.pt after every epoch and best.pt at the best test-split mAP.
Multi-GPU: `torchrun --nproc-per-node N -m training.fit ...`.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .config import FitConfig, parse_config, write_toml
from .data.augment import AugmentSettings, augment
from .data.folder import load_images, scan_folder
from .data.split import Split, read_split, stratified_split, subsample_train, write_split
from .data.stats import band_stats
from .init_model import read_init
from .logger import MetricsLog
from .losses import LossSpec, loss_spec
from .meta import git_revision, make_meta
from .models import architecture_meta
from .parts import (
    Decoded,
    Parts,
    build_parts,
    copies_per_image,
    epoch_batches,
    epoch_generator,
    freeze_batchnorm,
    init_bank,
    test_map,
)
from .runtime import Runtime, average_gradients, barrier, gather, same_on_all_ranks, setup_runtime, shutdown
from .schedule import bank_momentum


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
        images = load_images(cfg.data, [p for p, _ in items], cfg.bands, cfg.input_size, cfg.workers,
                             cfg.tile_size or None)
        return images.to(rt.device), torch.tensor([label for _, label in items], dtype=torch.long, device=rt.device)
    train, train_labels = load(split.train)
    test, test_labels = load(split.test)
    return Decoded(split, train, train_labels, test, test_labels)


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
def ema_update(ema: nn.Module, net: nn.Module, momentum: float) -> None:
    """ema <- momentum * ema + (1 - momentum) * net, parameters only (the EMA's BN statistics follow its own
    forward passes, as in MoCo and Kang's SNCA-CE code)."""
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)


def _progress(items: Sequence, enabled: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on bare GPU images
        return items
    return tqdm(items, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


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


@dataclass
class Record:
    """Where a run stands, as last.pt keeps it: epochs done, the best and the latest test mAP, training
    seconds, and the normalisation the network is fed (the data's, --init's, or the resumed run's)."""

    mean: list
    std: list
    epoch: int = 0
    best: float = -1.0  # below any mAP: the first evaluation is the best so far
    best_epoch: int = -1
    last_map: float | None = None
    seconds: float = 0.0

    def restore(self, state: dict) -> None:
        """Continue from a last.pt (its meta holds the normalisation and the card's metrics)."""
        meta = state["meta"]
        self.epoch, self.best, self.best_epoch = state["epoch"], state["best_map"], state["best_epoch"]
        self.mean, self.std = meta["mean"], meta["std"]
        self.last_map = meta["training"]["metrics"]["test_map"]
        self.seconds = meta["training"]["train_seconds"]


@dataclass
class Run:
    """The pieces every step of `main` shares, so each step takes one argument instead of a dozen."""

    cfg: FitConfig
    rt: Runtime
    arch: dict
    spec: LossSpec
    split: Split
    data: Decoded
    parts: Parts
    record: Record
    init_meta: dict | None
    log: MetricsLog | None = None


def open_run_dir(cfg: FitConfig, rt: Runtime) -> None:
    """Check the run folder against --resume, print the revision and configuration, save config.toml."""
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


def load_data(cfg: FitConfig, split: Split, rt: Runtime) -> tuple[Decoded, Record]:
    """The decoded split, and a record starting from the training images' band statistics."""
    t0 = time.time()
    data = decode(cfg, split, rt)
    mean, std = band_stats(data.train.cpu())
    if rt.is_main:
        print(f"decoded {len(data.train)} training and {len(data.test)} test images of {len(split.classes)} "
              f"classes in {time.time() - t0:.1f} s; mean {np.round(mean, 4).tolist()}, "
              f"std {np.round(std, 4).tolist()}", flush=True)
    return data, Record(mean, std)


def run_architecture(cfg: FitConfig) -> dict:
    return architecture_meta(cfg.backbone, cfg.head, cfg.pooling, cfg.embedding_dim, cfg.input_size,
                             len(cfg.bands), {"reduction": cfg.attention_reduction}
                             if cfg.head == "dual_attention" else {}, cfg.gem_p)


def resume(run: Run) -> None:
    """Continue from the run folder's last.pt: parts, optimiser state and record."""
    run_dir = run.cfg.run_dir
    state = checkpoint.read(run_dir / "last.pt", run.rt.device)
    differ = checkpoint.architecture_differences(state["meta"], run.arch)
    if differ:
        raise SystemExit(f"{run_dir}/last.pt was trained with another architecture (checkpoint, run): "
                         f"{differ}")
    run.parts.restore(state)
    run.record.restore(state)
    if run.rt.is_main:
        print(f"resumed {run_dir}/last.pt at epoch {run.record.epoch}", flush=True)


def save(run: Run, epoch: int) -> None:
    """last.pt (and best.pt when this epoch holds the best test mAP), main process only."""
    r = run.record
    metrics = {"test_map": r.last_map, "best_test_map": r.best if r.best >= 0 else None,
               "best_epoch": r.best_epoch if r.best >= 0 else None}
    meta = make_meta(run.cfg, run.arch, r.mean, r.std, run.split, run.rt, metrics, epoch, r.seconds,
                     run.init_meta)
    state = {"meta": meta, **run.parts.state(), "epoch": epoch, "best_map": r.best,
             "best_epoch": r.best_epoch}
    checkpoint.save_atomic(state, run.cfg.run_dir / "last.pt")
    if r.best_epoch == epoch and r.best >= 0:
        checkpoint.copy_atomic(run.cfg.run_dir / "last.pt", run.cfg.run_dir / "best.pt")


def evaluate_start(run: Run) -> None:
    """Epoch 0: the starting network's test mAP, logged and saved (the only epoch of --epochs 0)."""
    cfg, r = run.cfg, run.record
    if run.rt.is_main:
        r.last_map = test_map(run.parts.net, run.data, r.mean, r.std, cfg, run.rt)
        start = f"from {Path(cfg.init).name}" if cfg.init else "untrained"
        print(f"epoch 0 ({start}): test mAP {r.last_map:.4f}", flush=True)
        run.log.epoch({"epoch": 0, "step": 0, "test_map": r.last_map})
        if cfg.epochs == 0:
            r.best, r.best_epoch = r.last_map, 0
        save(run, 0)
    barrier(run.rt)


def finish_epoch(run: Run, row: dict) -> None:
    """Evaluate when due, log the row, print a line and save: main process only."""
    cfg, r, done = run.cfg, run.record, row["epoch"]
    evaluate_now = done == cfg.epochs or (cfg.eval_every > 0 and done % cfg.eval_every == 0)
    if evaluate_now:
        r.last_map = row["test_map"] = test_map(run.parts.net, run.data, r.mean, r.std, cfg, run.rt)
        if r.last_map > r.best:
            r.best, r.best_epoch = r.last_map, done
    run.log.epoch(row)
    print(f"epoch {done}/{cfg.epochs}: loss {row.get('loss', float('nan')):.4f}"
          + (f", test mAP {r.last_map:.4f}" if evaluate_now else "") + f", {row['seconds']:.1f} s",
          flush=True)
    save(run, done)


def must_stop(cfg: FitConfig, done: int, started: float, cycle: float) -> bool:
    """--stop-after is reached, or one more epoch as long as the last one (with a margin) would pass
    --time-limit (which counts from `started`, decoding included)."""
    out_of_time = cfg.time_limit > 0 and time.time() - started + 1.2 * cycle > cfg.time_limit * 60
    return done < cfg.epochs and (bool(cfg.stop_after and done >= cfg.stop_after) or out_of_time)


def train_epochs(run: Run, started: float) -> None:
    """The epochs from the record's to --epochs, or until must_stop."""
    cfg, r = run.cfg, run.record
    for epoch in range(r.epoch, cfg.epochs):
        t_epoch = time.time()
        row = train_epoch(run.parts, epoch, cfg, run.spec, run.data, r.mean, r.std, run.rt, run.log)
        r.epoch, r.seconds = row["epoch"], r.seconds + row["seconds"]
        if run.rt.is_main:
            finish_epoch(run, row)
        barrier(run.rt)
        if must_stop(cfg, row["epoch"], started, time.time() - t_epoch):
            if run.rt.is_main:
                print(f"stopping after epoch {row['epoch']} of {cfg.epochs}; continue with --resume --out "
                      f"{cfg.run_dir}")
            break


def main(cfg: FitConfig) -> Path:
    """Train as configured; returns the run folder."""
    started = time.time()  # --time-limit counts everything, decoding included
    rt = setup_runtime(cfg.device, cfg.amp, cfg.channels_last)
    open_run_dir(cfg, rt)
    torch.manual_seed(cfg.seed)
    split = prepare_split(cfg, cfg.run_dir, rt)
    data, record = load_data(cfg, split, rt)
    arch, spec = run_architecture(cfg), loss_spec(cfg.loss)
    init = read_init(cfg.init) if cfg.init else None
    parts = build_parts(cfg, arch, spec, data, rt, init)
    init_meta = init["meta"] if init is not None else None
    if init_meta is not None:
        # What the network was trained to be fed, not this data's statistics.
        record.mean, record.std = init_meta["mean"], init_meta["std"]
    run = Run(cfg, rt, arch, spec, split, data, parts, record, init_meta)
    if cfg.resume:
        resume(run)
    elif parts.bank is not None and cfg.bank_init == "features":
        init_bank(parts.bank, parts.net, data, record.mean, record.std, cfg, rt, spec.rotations)
    losses = [f"loss_{n}" for n in parts.criterion.parts]
    run.log = MetricsLog(cfg.run_dir, ["epoch", "step", "lr", "loss", *losses, "bank_momentum", "test_map",
                                       "seconds", "images_per_s"], rt.is_main)
    if record.epoch == 0:
        evaluate_start(run)
    train_epochs(run, started)
    run.log.close()
    shutdown(rt)
    return cfg.run_dir


def cli(argv: Sequence[str] | None = None) -> None:
    main(parse_config(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
