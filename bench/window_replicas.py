"""Diagnosis: are SASRec's windows short of RecBole's per-prefix training because the targets of a
window share one forward pass (one dropout draw)? Each training window is replicated K times per
epoch and replica r learns only the targets at positions p with p % K == r, so every target is
still learned once per epoch but shares its pass with 1/K as many others (K x the compute).

    python bench/window_replicas.py 5 p_k5_b32_ema '{"batch_size": 32, "lr": 1e-3, "context": 20, "ema": 0.995}' 2020

Arguments: K, a tag, training options (JSON), seeds, optionally model options (JSON). Each run is
bench/sweep.py's (same protocol: ml-100k, leave-one-out, full ranking, max_len 50, 1 torch thread);
prints per-epoch (epoch, seconds, valid NDCG@10, test NDCG@10) and appends one JSON line per seed
to bench/results/window_replicas.jsonl.
"""

import json
import sys

import torch
from sweep import run_seed  # bench/ is the script's own folder, so on sys.path

from recnb.data import Windows, load_scene, train_windows
from recnb.train import TrainConfig


def replicated(windows: Windows, k: int) -> Windows:
    """``k`` copies of every window, copy r keeping the targets at positions p % k == r."""
    keep = torch.arange(windows.inputs.shape[1]) % k
    targets = torch.cat([windows.targets * (keep == r) for r in range(k)])
    used = targets.ne(0).any(1)
    return Windows(windows.inputs.repeat(k, 1)[used], targets[used], windows.users.repeat(k)[used])


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        raise SystemExit(__doc__)
    k, tag, train_opts = int(argv[0]), argv[1], json.loads(argv[2])
    seeds = [int(s) for s in argv[3].split(",")]
    model_opts = json.loads(argv[4]) if len(argv) > 4 else {}
    torch.set_num_threads(1)
    scene = load_scene("ml-100k")
    epochs = train_opts.pop("epochs", 100)
    base = train_windows(scene, 50, TrainConfig(max_len=50, **train_opts).context)
    windows = replicated(base, k)
    print(len(base), "->", len(windows), "windows", flush=True)
    for seed in seeds:
        run_seed(scene, "sasrec", model_opts, train_opts, epochs, seed, tag, results="window_replicas.jsonl",
                 windows=windows, extra={"k": k}, echo=True)


if __name__ == "__main__":
    main(sys.argv[1:])
