"""Training throughput: shard loader alone, training step alone, full loop (issue: loader ≥ 3× the model).

For one method/recipe on training shards (default: a `synthetic-tiny` train split rendered into a temp dir):
  1. loader: samples/s of the DataLoader (decode + augment + spectrogram in `--workers` processes), streaming
     from the tars; with `cache_decoded` recipes also the cached path (decode once, then crop/flip only);
  2. model: samples/s of forward + loss + backward + Adam step on in-memory tensors of the right shapes;
  3. loop: samples/s of `train()` itself (its run.json `samples_per_s`, cache fill excluded and reported apart).
Prints the loader/model ratio for the path the recipe uses. CPU here; CUDA when present (`--device cuda`).

    .venv/bin/python bench/train_speed.py --method ezvsl --recipe synthetic [--data DIR] [--batches 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _data(args, tmp: Path) -> Path:
    if args.data:
        return Path(args.data)
    from tests.train.synthetic_shards import write_synthetic

    return write_synthetic(tmp, "synthetic-tiny", ("train",), samples_per_shard=128, workers=2)["train"]


def _loader_rate(dataset, batch_size: int, workers: int, batches: int, seed: int = 0) -> float:
    from torch.utils.data import DataLoader

    from avsl_bench.train.data import EpochBatchSampler
    from avsl_bench.train.seeding import worker_init_fn

    sampler = EpochBatchSampler(len(dataset), batch_size, seed=seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                        worker_init_fn=worker_init_fn if workers else None, persistent_workers=workers > 0)
    n, t0, epoch = 0, None, 0
    while n < batches:
        sampler.set_epoch(epoch)
        for batch in loader:
            if t0 is None:  # exclude worker start-up
                t0 = time.perf_counter()
                continue
            n += 1
            if n >= batches:
                break
        epoch += 1
    return batches * batch_size / (time.perf_counter() - t0)


def _model_rate(recipe, device: torch.device, steps: int) -> float:
    from avsl_bench.models import build_model

    model = build_model(recipe.method, recipe.model, audio_in_bins=recipe.audio_in_bins).to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.optim.lr)
    b, s = recipe.schedule.batch_size, recipe.input.image_size
    image = torch.randn(b, 3, s, s, device=device)
    if recipe.input.audio_frontend == "pooled":
        audio = torch.randn(b, recipe.input.freq_bins, recipe.input.time_frames, device=device)
    else:
        audio = torch.randn(b, 1, 257, 200, device=device)

    def step():
        loss, _ = model.loss(model(image, audio))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * b / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="ezvsl")
    ap.add_argument("--recipe", default="synthetic")
    ap.add_argument("--data", help="training split directory (default: render synthetic-tiny/train to a temp dir)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: the recipe's)")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the full-loop measurement")
    args = ap.parse_args()

    from avsl_bench.models.recipes import load_recipe
    from avsl_bench.train.data import AVDataset, ShardIndex
    from avsl_bench.train.distributed import resolve_device
    from avsl_bench.train.loop import train

    recipe = load_recipe(args.method, args.recipe)
    device = resolve_device(args.device)
    workers = recipe.runtime.workers if args.workers is None else args.workers
    with tempfile.TemporaryDirectory(prefix="avsl-train-speed-") as tmp:
        data = _data(args, Path(tmp))
        index = ShardIndex.build(data)
        print(f"{args.method}/{args.recipe} on {len(index)} samples ({data}); device {device}; "
              f"torch threads {torch.get_num_threads()}; loader workers {workers}")
        stream = _loader_rate(AVDataset(index, recipe.input, mode="train"), recipe.schedule.batch_size, workers,
                              args.batches)  # fmt: skip
        print(f"1. loader (streaming from tars): {stream:9.1f} samples/s")
        cached = None
        if recipe.runtime.cache_decoded:
            ds = AVDataset(index, recipe.input, mode="train")
            t0 = time.perf_counter()
            ds.fill_cache(workers)
            fill = time.perf_counter() - t0
            cached = _loader_rate(ds, recipe.schedule.batch_size, 0, args.batches)
            print(f"   loader (cached, after a {fill:.1f} s fill = {len(ds) / fill:.0f} samples/s): "
                  f"{cached:9.1f} samples/s")
        model = _model_rate(recipe, device, args.batches)
        print(f"2. training step (in-memory tensors): {model:9.1f} samples/s")
        run = train(args.method, data, Path(tmp) / "run", args.recipe, epochs=args.epochs, device=args.device,
                    workers=args.workers)  # fmt: skip
        loop = run["timing"]["samples_per_s"]
        print(f"3. full loop (train(), {args.epochs} epochs): {loop:9.1f} samples/s "
              f"(cache fill {run['timing']['cache_s']:.1f} s apart)")
        used = cached if cached is not None else stream
        ratio = used / model
        print(f"loader/model = {ratio:.2f}x ({'cached' if cached is not None else 'streaming'} path; goal ≥ 3x)"
              f"{'' if ratio >= 3 else '  <-- loader-bound'}")


if __name__ == "__main__":
    main()
