"""Training speed of the project's epoch function: float32 against bfloat16 autocast, in one run.

The same model, optimizer and synthetic batches (random 16-image batches; throughput does not depend on
the pixels) go through `train_one_epoch` in each precision, alternated over several rounds so a noisy
machine affects both alike; the best round of each is reported, with the ratio. Also checks that one
bfloat16 step moves the weights like a float32 step (the relative difference of the updates).

    python bench/train_speed.py [--backbone efficientnet_lite0] [--sizes 224,288] [--steps 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake.model.classifier import build_classifier  # noqa: E402
from deepfake.model.training import train_one_epoch  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def images_per_second(model, batches, precision: str) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    train_one_epoch(model, criterion, optimizer, batches[:1], torch.device("cpu"), None, precision=precision)  # warm-up
    return train_one_epoch(model, criterion, optimizer, batches, torch.device("cpu"), None, precision=precision)[
        "images_per_s"
    ]


def update_difference(model, batch) -> float:
    """|bf16 update - fp32 update| / |fp32 update| for one SGD step from the same weights."""
    updates = {}
    for precision in PRECISIONS:
        copy_ = copy.deepcopy(model)
        before = [p.detach().clone() for p in copy_.parameters()]
        optimizer = torch.optim.SGD(copy_.parameters(), lr=0.1)
        torch.manual_seed(1)  # the same dropout mask for both
        train_one_epoch(
            copy_, torch.nn.CrossEntropyLoss(), optimizer, [batch], torch.device("cpu"), None, precision=precision
        )
        updates[precision] = torch.cat([(p.detach() - b).flatten() for p, b in zip(copy_.parameters(), before)])
    return float((updates["bf16"] - updates["fp32"]).norm() / updates["fp32"].norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--sizes", default="224,288")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "train_speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"backbone": args.backbone, "batch": args.batch, "threads": torch.get_num_threads(), "sizes": {}}
    for size in map(int, args.sizes.split(",")):
        model, _ = build_classifier(args.backbone, "imagenet")
        model = model.to(memory_format=torch.channels_last)
        batches = [
            (torch.randn(args.batch, 3, size, size), torch.randint(0, 2, (args.batch,))) for _ in range(args.steps)
        ]
        best = dict.fromkeys(PRECISIONS, 0.0)
        for _ in range(args.rounds):
            for precision in PRECISIONS:
                best[precision] = max(best[precision], images_per_second(model, batches, precision))
        results["sizes"][size] = {
            **{f"{p}_images_per_s": round(best[p], 2) for p in PRECISIONS},
            "bf16_speedup": round(best["bf16"] / best["fp32"], 3),
            "bf16_update_relative_difference": round(update_difference(model, batches[0]), 4),
        }
        print(f"{args.backbone} {size}px: {json.dumps(results['sizes'][size])}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
