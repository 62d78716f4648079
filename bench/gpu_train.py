"""Train the MNIST slice on one GPU with the worker loop that Ray Train runs, called without Ray.

    python bench/gpu_train.py --shards .gpu/shards/mnist --epochs 3 --out gpu_train.md

The GPU machine has no Ray and no MLflow, so this calls `orchestration.worker.run_local`, the same
`run_training` loop with a local session (pyarrow reading, local checkpoints, no tracking). The
network is the reference's MNIST row (784-800-10, hidden threshold 20, output 8, lambda 10,
beta 0.04, T = 400, spec section 5) at a throughput batch size; the backend is the engine's
automatic choice (Triton on CUDA). Prints the loop's epoch lines (accuracy, samples/s, peak memory)
and writes them as a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

MNIST_MLP: dict[str, Any] = {
    "seed": 0,
    "data": {"shards": "", "T": 400, "encoder": "rate"},
    "network": {
        "input_shape": [784],
        "layers": [
            {"kind": "fc", "size": 800, "threshold": 20},
            {"kind": "output", "size": 10, "threshold": 8},
        ],
        "reg_lambda": 10.0,
        "reg_beta": 0.04,
    },
    "optimizer": {"lr": 1e-3, "schedule": "mlp"},
    "train": {"epochs": 3, "batch_size": 16},
    "run": {"name": "gpu-train"},
}

COLUMNS = (
    ("epoch", "d"),
    ("train_accuracy", ".4f"),
    ("val_accuracy", ".4f"),
    ("train_loss", ".2f"),
    ("samples_per_s", ".0f"),
    ("epoch_seconds", ".1f"),
    ("peak_memory_mb", ".0f"),
)


def train(
    shards: str, epochs: int, batch_size: int, device: str, storage: str, overrides: list[str]
) -> list[dict[str, float]]:
    from hm2bp.orchestration.config import config_from_dict
    from hm2bp.orchestration.worker import run_local

    settings = [
        f"train.epochs={epochs}",
        f"train.batch_size={batch_size}",
        f"run.storage_path={storage}",
    ]
    config = config_from_dict(MNIST_MLP, settings + overrides, source="bench/gpu_train.py")
    return run_local(config, shards, device=device)


def table(history: list[dict[str, float]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |"]
    lines.append("|" + " ---: |" * len(COLUMNS))
    for epoch, metrics in enumerate(history, start=1):
        values = {"epoch": epoch, **metrics}
        lines.append("| " + " | ".join(format(values[k], f) for k, f in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True, help="MNIST shards (hm2bp convert mnist)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override, e.g. --set network.layers.0.size=100",
    )
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as storage:
        history = train(args.shards, args.epochs, args.batch_size, args.device, storage, args.set)
    from hm2bp.kernels.backend import select_backend

    text = (
        f"MNIST slice ({args.shards}), 784-800-10, T=400, batch {args.batch_size}, "
        f"{args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
        f"backend {select_backend(args.device)}, torch {torch.__version__}\n\n{table(history)}\n"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return history


if __name__ == "__main__":
    main()
