"""Device choice and `torchrun` data parallelism with a fixed global batch (baselines spec §1).

Each of G processes gets B/G samples of every global batch; before every batch-wise loss the embeddings are
all-gathered **with gradient** (`_GatherWithGrad`), so every process computes the loss
on the full global batch and the negatives do not depend on G. Backward sums the gradient of every copy of the
loss into each process's local embeddings (G × ∂L/∂e), and DDP's gradient averaging divides by G again: the
parameter update equals single-process training on the whole batch. BatchNorm becomes SyncBatchNorm when G > 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError

__all__ = ["DistInfo", "resolve_device", "init_distributed", "gather_embeddings", "reduce_mean", "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` → CUDA if available else CPU; `cuda` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' requested but no CUDA device is available")
        return torch.device(device if ":" in device else f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every process's tensor along dim 0; backward sums the incoming gradient over processes
    (each process computed the loss on the whole gathered batch) and returns this process's slice."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def _gather(t: torch.Tensor) -> torch.Tensor:
    if t.requires_grad:
        return _GatherWithGrad.apply(t)
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def gather_embeddings(emb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All-gather every embedding along the batch (rank order), with gradient where it requires one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return emb
    return {k: _gather(v) for k, v in emb.items()}


def reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar tensor over processes (for logging)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
