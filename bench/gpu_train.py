"""Train the MNIST slice on one GPU with the worker loop that Ray Train runs, called without Ray.

    python bench/gpu_train.py --shards .gpu/shards/mnist --epochs 3 --out gpu_train.md

The GPU machine has no Ray and no MLflow, so this calls `orchestration.worker.run_local`, the same
`run_training` loop with a local session (pyarrow reading, local checkpoints, no tracking), with
`configs/mnist_slice.yaml` (784-800-10, the MNIST MLP row's neurons and regulariser, T = 400,
batch 16) on one worker. The backend is the engine's automatic choice (Triton on CUDA). Prints the
loop's epoch lines (accuracy, samples/s, peak memory) and writes them as a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mnist_slice.yaml"

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
    from hm2bp.orchestration.config import load_config
    from hm2bp.orchestration.worker import run_local

    settings = [
        f"train.epochs={epochs}",
        f"train.batch_size={batch_size}",
        f"run.storage_path={storage}",
        "scaling.workers=1",
    ]
    config = load_config(CONFIG, settings + overrides)
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
        f"{CONFIG.name} on {args.shards}, batch {args.batch_size}, "
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
