"""Emotion-model training time on CPU: the stacked 40-head design against 40 separate nn.Sequential heads (the
obvious implementation of the reference design) over the same data and epochs, and the shared MLP beside them.

Data: synthetic 1152-dim embeddings (SigLIP2 so400m's width) with a planted linear signal per emotion.
`python -m bench.bench_model [--images N] [--epochs E]`.
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

from bench.common import peak_rss_mb
from emonet_assets.lib.model.emotion_model import ModelConfig, train_model

DIM, EMOTIONS = 1152, 40


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    w = rng.normal(size=(DIM, EMOTIONS)).astype(np.float32) / np.sqrt(DIM)
    y = np.clip(np.rint(3.5 + 2 * (x @ w) + rng.normal(0, 0.5, (n, EMOTIONS))), 0, 7).astype(np.float32)
    return x, y


def separate_heads_seconds(x: np.ndarray, y: np.ndarray, config: ModelConfig, epochs: int) -> float:
    """40 nn.Sequential MLPs stepped one after another on each batch: the loop the stacked heads replace."""
    torch.manual_seed(config.seed)
    heads = []
    for _ in range(EMOTIONS):
        dims = [DIM, *config.hidden, 1]
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers += [nn.ReLU(), nn.Dropout(config.dropout)]
        heads.append(nn.Sequential(*layers))
    optimizers = [torch.optim.AdamW(h.parameters(), lr=config.learning_rate) for h in heads]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(tx))
        for start in range(0, len(tx), config.batch_size):
            batch = order[start : start + config.batch_size]
            for e, (head, optimizer) in enumerate(zip(heads, optimizers, strict=True)):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(head(tx[batch]).squeeze(-1), ty[batch, e])
                loss.backward()
                optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    x, y = planted(args.images)
    vx, vy = planted(args.images // 8, seed=1)
    print(
        f"{args.images:,} train + {len(vx):,} validation embeddings x {DIM} dims, 40 emotions, CPU, "
        f"{torch.get_num_threads()} threads, {args.epochs} epochs (patience off)"
    )
    timings = {}
    for name, architecture, hidden in (
        ("stacked heads, Small (128, 32)", "heads", (128, 32)),
        ("stacked heads, Large (1024, 512, 256)", "heads", (1024, 512, 256)),
        ("shared MLP (512, 256)", "shared", (512, 256)),
    ):
        config = ModelConfig(architecture=architecture, hidden=hidden, max_epochs=args.epochs, patience=args.epochs)
        started = time.perf_counter()
        train_model(x, y, vx, vy, config, [f"e{i}" for i in range(EMOTIONS)])
        timings[name] = time.perf_counter() - started
        print(f"  {name:<40} {timings[name]:7.1f} s  ({timings[name] / args.epochs:.2f} s/epoch)")
    small = ModelConfig(hidden=(128, 32), max_epochs=args.epochs)
    baseline = separate_heads_seconds(x, y, small, args.epochs)
    stacked = timings["stacked heads, Small (128, 32)"]
    print(f"  40 separate nn.Sequential heads, Small   {baseline:7.1f} s  (training loop only, no validation)")
    print(f"ratio separate / stacked (Small): {baseline / stacked:.1f}x; peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
