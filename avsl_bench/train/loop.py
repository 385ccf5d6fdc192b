"""The one training loop: a recipe's fixed schedule on training shards, final checkpoint, run.json.

No early stopping by construction: the loop reads training shards only (`check_training_data` refuses test
splits and negatives), has no validation hook, trains every epoch of the recipe and writes `final.pt` — the
result. `save_every` keeps `epoch_XXX.pt` files for diagnostics; they are never selected from. With
`schedule.weight_ema` every checkpoint holds the running average of the weights rather than the last step's.

Runs unchanged on CPU, one GPU or `torchrun --nproc_per_node G` (fixed global batch, embeddings all-gathered
with gradient, SyncBatchNorm for G > 1 on CUDA; gloo/CPU runs keep per-process BatchNorm and say so); AMP (bf16/fp16 per recipe) and channels_last apply on CUDA only.

Semi-supervised methods (§3.7) declare `uses_targets = True`: their items carry the box mask of labelled samples
(`AVDataset(targets=True)`), `forward` also receives `mask`, `labelled` and `index` (all-gathered with the
embeddings it returns), the sampler is `SemiSupBatchSampler` (`schedule.warmup_epochs` labelled-only epochs, then
unlabelled + `labelled_batch_size` labelled per batch) and `model.start_epoch(epoch, warmup=...)` is called before
each epoch. Every other method runs exactly as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader

from .. import features
from ..errors import UsageError
from ..files import atomic_write, sha256_file, write_json_atomic
from ..models import build_model
from ..models.base import ema_update, teacher_copy
from ..models.recipes import Recipe, load_recipe
from ..provenance import tool_info
from . import distributed as D
from .data import AVDataset, EpochBatchSampler, SemiSupBatchSampler, ShardIndex, check_training_data, labelled_flags
from .seeding import seed_everything, worker_init_fn

__all__ = ["train", "RUN_SCHEMA", "CHECKPOINT_FORMAT", "save_checkpoint", "leakage_flag", "debiased_momentum"]

RUN_SCHEMA = "avsl-bench-run@1"
CHECKPOINT_FORMAT = "avsl-bench-checkpoint@1"
log = logging.getLogger("avsl_bench.train")

#: Training sets whose legacy list shares clips with a test set (data spec §5.3); `-noleak` variants do not.
_LEAKY_LISTS = {"vggsound-10k", "vggsound-144k", "flickr-10k", "flickr-144k"}
_CLEAN_LISTS = {"vggsound-heard", "vggsound", "flickr-sup-train"}


def leakage_flag(benchmarks: Sequence[str]) -> bool | None:
    """True if any training benchmark is a leaky legacy list, False if all are known clean, else None."""
    flags = []
    for name in benchmarks:
        base = name.split("@")[0]
        if base.endswith("-noleak") or base in _CLEAN_LISTS or base.startswith("synthetic"):
            flags.append(False)
        elif base in _LEAKY_LISTS:
            flags.append(True)
        else:
            flags.append(None)
    if any(f is True for f in flags):
        return True
    return False if flags and all(f is False for f in flags) else None


def save_checkpoint(path: Path, model: torch.nn.Module, recipe: Recipe, extra: dict[str, Any]) -> str:
    """Write a checkpoint atomically; return its sha256."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "method": recipe.method, "recipe": recipe.to_json(), "state_dict": state,
               **extra}  # fmt: skip
    with atomic_write(path, "wb") as fh:
        torch.save(payload, fh)
    return sha256_file(path)


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _move(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    image = features.normalize_image(batch["image"].to(device, non_blocking=True))
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return image, batch["audio"].to(device, non_blocking=True)


def _extras(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The semi-supervised inputs of a batch: box mask (float 0/1), labelled flag, sample index."""
    return {"mask": batch["mask"].to(device, non_blocking=True).float(),
            "labelled": batch["labelled"].to(device, non_blocking=True),
            "index": batch["index"].to(device, non_blocking=True)}  # fmt: skip


def debiased_momentum(m: float, step: int) -> float:
    """The momentum of EMA update number `step` (1, 2, …) that makes the running average the bias-corrected EMA
    Σ_t (1 − m)·m^(T − t)·θ_t / (1 − m^T) of the weights after steps 1…T: the initial weights carry no share
    (the first update copies θ_1), however short the run."""
    return m * (1.0 - m ** (step - 1)) / (1.0 - m**step)


def _lr_factor(schedule, sampler) -> Callable[[int], float]:
    """Step → multiplier of optim.lr under `schedule.lr_decay`; the total step count is the sampler's length summed
    over the epochs (semi-supervised warm-up epochs are shorter)."""
    if schedule.lr_decay == "constant":
        return lambda step: 1.0
    total = 0
    for epoch in range(schedule.epochs):
        sampler.set_epoch(epoch)
        total += len(sampler)
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def train(
    method: str,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: str | os.PathLike,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    *,
    deterministic: bool = False,
    workers: int | None = None,
    save_every: int | None = None,
    overwrite: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train `method` with recipe `config` (a name under `baselines/<method>/` or a .toml path) on the training
    shards `data` (split directories or .tar files) and write `out/final.pt` + `out/run.json`.

    `epochs` overrides the recipe's schedule (recorded as such; reference runs use the recipe's). Returns the
    run.json dict (on every process; only rank 0 writes files).
    """
    t_start = time.perf_counter()
    recipe = load_recipe(method, config)
    recipe_file = recipe.source
    schedule_override = epochs is not None and epochs != recipe.schedule.epochs
    if epochs is not None:
        recipe = recipe.with_epochs(epochs)
    if save_every is not None:
        recipe = dataclasses.replace(recipe, schedule=dataclasses.replace(recipe.schedule, save_every=int(save_every)))
    out = Path(out)
    if (out / "final.pt").exists() and not overwrite:
        raise UsageError(f"{out}/final.pt exists; choose a new run directory (or overwrite=True)")

    dist_info = D.init_distributed(device)
    dev = dist_info.device
    seed_everything(seed, deterministic=deterministic)
    caught: list[str] = []

    # ---- data (training shards only)
    index = ShardIndex.build(data)
    check_training_data(index)
    dataset = AVDataset(index, recipe.input, mode="train", seed=seed)
    n_workers = recipe.runtime.workers if workers is None else int(workers)
    t_cache = time.perf_counter()
    if recipe.runtime.cache_decoded:
        dataset.fill_cache(n_workers)
        n_workers = 0
    cache_s = time.perf_counter() - t_cache
    semisup = bool(recipe.schedule.warmup_epochs or recipe.schedule.labelled_batch_size)
    if semisup:
        sampler = SemiSupBatchSampler(labelled_flags(index), recipe.schedule.batch_size, seed=seed,
                                      labelled_batch=recipe.schedule.labelled_batch_size,
                                      warmup_epochs=recipe.schedule.warmup_epochs, rank=dist_info.rank,
                                      world_size=dist_info.world_size)  # fmt: skip
    else:
        sampler = EpochBatchSampler(len(dataset), recipe.schedule.batch_size, seed=seed, rank=dist_info.rank,
                                    world_size=dist_info.world_size)  # fmt: skip
    loader = DataLoader(
        dataset, batch_sampler=sampler, num_workers=n_workers, pin_memory=dev.type == "cuda",
        worker_init_fn=worker_init_fn if n_workers else None, persistent_workers=n_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip

    # ---- model (identical init on every rank: seeded above)
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        model = build_model(recipe.method, recipe.model, audio_in_bins=recipe.audio_in_bins)
    for w in wlist:
        caught.append(str(w.message))
        log.warning("%s", w.message)
    uses_targets = bool(getattr(model, "uses_targets", False))
    if uses_targets != semisup:
        raise UsageError(f"{recipe.method}: " + ("a semi-supervised method needs schedule.warmup_epochs or "
                         "labelled_batch_size" if uses_targets else "schedule.warmup_epochs / labelled_batch_size "
                         "apply to semi-supervised methods only"))  # fmt: skip
    dataset.targets = uses_targets  # masks are made per item, so setting this after fill_cache is fine
    start_epoch = getattr(model, "start_epoch", None)
    sync_bn = dist_info.distributed and dev.type == "cuda"  # SyncBatchNorm has no CPU kernel
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif dist_info.distributed:
        caught.append("distributed CPU run: BatchNorm statistics are per process (SyncBatchNorm needs CUDA)")
        log.warning("%s", caught[-1])
    if dist_info.distributed:
        torch.manual_seed(seed * 1_000_003 + dist_info.rank)  # distinct dropout masks per rank
    channels_last = dev.type == "cuda" and recipe.runtime.channels_last
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if dist_info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt_cls = torch.optim.Adam if recipe.optim.name == "adam" else torch.optim.AdamW
    optimizer = opt_cls([p for p in model.parameters() if p.requires_grad], lr=recipe.optim.lr,
                        betas=recipe.optim.betas, eps=recipe.optim.eps, weight_decay=recipe.optim.weight_decay)
    lr_factor = _lr_factor(recipe.schedule, sampler)
    averaged = teacher_copy(model) if recipe.schedule.weight_ema else None  # schedule.weight_ema's running average
    held = averaged if averaged is not None else model  # the weights every checkpoint holds
    amp = recipe.runtime.amp if dev.type == "cuda" else "none"
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    # ---- fixed schedule
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    history, epoch_ckpts = [], []
    steps, seen, epoch_samples = 0, 0, []
    t_loop = time.perf_counter()
    model.train()
    for epoch in range(recipe.schedule.epochs):
        sampler.set_epoch(epoch)
        if start_epoch is not None:
            start_epoch(epoch, warmup=epoch < recipe.schedule.warmup_epochs)
        t_epoch = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        n_batches = 0
        batch_size = sampler.global_batch() if semisup else recipe.schedule.batch_size
        epoch_samples.append(len(sampler) * batch_size)
        for batch in loader:
            image, audio = _move(batch, dev, channels_last)
            extras = _extras(batch, dev) if uses_targets else {}
            with _autocast(dev, amp):
                emb = net(image, audio, **extras)
            loss, stats = model.loss(D.gather_embeddings(emb))
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = recipe.optim.lr * lr_factor(steps)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if averaged is not None:
                ema_update(averaged, model, debiased_momentum(recipe.schedule.weight_ema, steps + 1))
            steps += 1
            n_batches += 1
            seen += batch_size
            for k, v in {"loss": loss.detach(), **stats}.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
        record = {k: float(D.reduce_mean(v / max(n_batches, 1))) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1}: {record}")
        record.update(epoch=epoch + 1, steps=steps, lr=optimizer.param_groups[0]["lr"], seconds=round(time.perf_counter() - t_epoch, 3))
        history.append(record)
        log.info("epoch %d/%d %s", epoch + 1, recipe.schedule.epochs, record)
        if on_epoch is not None and dist_info.is_main:
            on_epoch(record)
        every = recipe.schedule.save_every
        if every and (epoch + 1) % every == 0 and epoch + 1 < recipe.schedule.epochs and dist_info.is_main:
            name = f"epoch_{epoch + 1:03d}.pt"
            digest = save_checkpoint(out / name, held, recipe, {"epoch": epoch + 1, "seed": seed})
            epoch_ckpts.append({"file": name, "epoch": epoch + 1, "sha256": digest, "selected": False})
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    loop_s = time.perf_counter() - t_loop

    # ---- final checkpoint + run.json (rank 0)
    run: dict[str, Any] = {}
    if dist_info.is_main:
        digest = save_checkpoint(out / "final.pt", held, recipe, {"epoch": recipe.schedule.epochs, "seed": seed})
        benchmarks = index.benchmarks()
        run = {
            "schema": RUN_SCHEMA,
            "method": recipe.method,
            "recipe": {"name": recipe.name, "file": recipe_file, "sha256": sha256_file(recipe_file) if recipe_file else None,
                       "schedule_overridden": schedule_override, "resolved": recipe.to_json()},
            "seed": seed,
            "deterministic": deterministic,
            "device": {"type": dev.type, "name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
                       "world_size": dist_info.world_size, "sync_batchnorm": sync_bn, "amp": amp, "channels_last": channels_last,
                       "torch_threads": torch.get_num_threads()},
            "epochs": recipe.schedule.epochs,
            "steps": steps,
            "batch_size": {"global": recipe.schedule.batch_size, "per_process": sampler.local},
            "training_data": {
                "sources": [str(p) for p in index.sources],
                "benchmarks": benchmarks,
                "splits": index.splits(),
                "samples": len(index),
                "samples_per_epoch": epoch_samples[-1] if epoch_samples else 0,
                **({"labelled": int(labelled_flags(index).sum()), "samples_per_epoch_each": epoch_samples}
                   if semisup else {}),
                "keys_sha256": index.keys_sha256(),
                "manifest_sha256": index.manifest_sha256,
                "shards": index.shard_digests(),
                "leaky": leakage_flag(benchmarks),
            },
            "checkpoint": {"file": "final.pt", "sha256": digest},
            "checkpoint_selection": "final",
            "epoch_checkpoints": epoch_ckpts,
            "weights": model.weights_info,
            "warnings": caught,
            "tool": tool_info(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "timing": {"wall_s": round(time.perf_counter() - t_start, 3), "cache_s": round(cache_s, 3),
                       "train_loop_s": round(loop_s, 3), "samples_per_s": round(seen / loop_s, 1) if loop_s > 0 else None,
                       "workers": n_workers},
            "history": history,
        }  # fmt: skip
        write_json_atomic(out / "run.json", run)
    return run
