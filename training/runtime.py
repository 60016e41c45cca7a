"""Where training runs: device, mixed precision, and the torchrun process group (DDP)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world: int
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return f"{self.world} x {name}, {amp}" + (", channels_last" if self.channels_last else "")


def setup_runtime(device: str = "auto", amp: str = "auto", channels_last: bool = True) -> Runtime:
    """Join the torchrun process group if there is one, pick the device and the autocast dtype.

    AMP and channels_last apply on CUDA only; "auto" AMP is bf16 where supported, else fp16.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type != "cuda":
        amp_dtype = None
    elif amp == "auto":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        amp_dtype = AMP_DTYPES[amp]
    return Runtime(dev, rank, world, amp_dtype, channels_last and dev.type == "cuda")


def gather(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Concatenate equally shaped tensors from every rank (rank order); the tensor itself alone."""
    if not rt.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(rt.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def average_gradients(params, rt: Runtime) -> None:
    """All-reduce-average the gradients of parameters that DDP does not manage (the loss's own)."""
    if not rt.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(rt.world)


def broadcast(t: torch.Tensor, rt: Runtime) -> None:
    """Overwrite t with rank 0's copy, in place."""
    if rt.distributed:
        dist.broadcast(t, 0)


def same_on_all_ranks(t: torch.Tensor, rt: Runtime) -> bool:
    """Whether t's checksum agrees on every rank (the memory bank must stay identical)."""
    if not rt.distributed:
        return True
    s = t.double().sum().reshape(1)
    lo, hi = s.clone(), s.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(lo == hi)


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def shutdown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
