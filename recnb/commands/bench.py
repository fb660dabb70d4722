"""``recnb bench latency --model DIR/model.pt --device cpu|cuda --batch 1,256``: median
milliseconds per batch (forward + scoring every item at the last position) after warm-up,
printed as JSON."""

from __future__ import annotations

import json

from recnb.commands.common import parse_list
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("bench")
    what = p.add_subparsers(dest="what", required=True)
    lat = what.add_parser("latency", help="median ms per batch of a checkpoint")
    lat.add_argument("--model", required=True, help="checkpoint (model.pt)")
    lat.add_argument("--device", default="cpu", help="cpu or cuda")
    lat.add_argument("--batch", default="1,256", help="comma-separated batch sizes")
    lat.add_argument("--seq-len", type=int, default=None, help="history length (default: the model's max_len)")
    lat.add_argument("--warmup", type=int, default=5, help="untimed batches before the timed ones")
    lat.add_argument("--repeats", type=int, default=20, help="timed batches (their median is reported)")
    lat.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    lat.set_defaults(func=run)


def run(args) -> int:
    import torch

    from recnb.checkpoint import load_checkpoint, resolve_device
    from recnb.measure import model_flops, model_latency

    batches = parse_list(args.batch, int, "--batch")
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batch: expected positive batch sizes, got {args.batch!r}")
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: expected a positive number of threads, got {args.threads}")
    if args.seq_len is not None and args.seq_len < 1:
        raise ConfigError(f"--seq-len: expected a positive history length, got {args.seq_len}")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.model, device="cpu")
    seq_len = args.seq_len if args.seq_len is not None else model.config.max_len
    result = {
        "model": str(args.model), "name": model.name, "dataset": meta.get("dataset"), "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "seq_len": seq_len,
        "params": model.num_params(), "params_no_embedding": model.num_params(embeddings=False),
        "flops": model_flops(model, seq_len), "warmup": args.warmup, "repeats": args.repeats,
        "median_ms": {str(b): _latency(model_latency, model, device, b, seq_len, args) for b in batches},
    }
    print(json.dumps(result, indent=1))
    return 0


def _latency(model_latency, model, device, batch: int, seq_len: int, args) -> float:
    """One batch size's median latency; a batch that does not fit in memory is one line naming
    it (the allocator's error was a traceback), whatever the device."""
    try:
        return round(model_latency(model, str(device), batch, seq_len, args.warmup, args.repeats), 4)
    except (RuntimeError, MemoryError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and "alloc" not in text and "out of memory" not in text:
            raise
        raise ConfigError(f"--batch {batch}: does not fit in {device.type} memory with --seq-len {seq_len}; "
                          "use smaller batch sizes") from None
