"""``recnb export``: a checkpoint as an ONNX or TorchScript graph that answers top-k (or all
scores) for a batch of left-padded histories, with its id map beside it."""

from __future__ import annotations

from recnb.commands.common import add_evaluation_args
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("export")
    p.add_argument("--model", required=True, help="checkpoint (model.pt)")
    p.add_argument("--format", default="onnx", help="onnx or torchscript")
    p.add_argument("--out", required=True, help="graph file to write; FILE.json (the id map) is written beside it")
    p.add_argument("--output", default="topk", help="topk (item ids and scores, default) or scores (every item)")
    p.add_argument("--top-k", type=int, default=10, help="k of the topk output")
    add_evaluation_args(p, ("exclude_seen",))
    p.add_argument("--quantize", default=None, help="int8: dynamic int8 quantisation of the ONNX weights")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.checkpoint import load_checkpoint
    from recnb.export import FORMATS, OUTPUTS, export, idmap_path

    if args.format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {args.format!r}")
    if args.output not in OUTPUTS:
        raise ConfigError(f"--output: expected one of {', '.join(OUTPUTS)}, got {args.output!r}")
    model, meta = load_checkpoint(args.model, "cpu")
    info = export(model, args.out, args.format, args.output, args.top_k, args.exclude_seen, args.quantize,
                  meta.get("id_maps"), meta.get("dataset"), args.force)
    what = f"top-{info['k']}" if info["output"] == "topk" else "scores"
    print(f"{info['model']} -> {args.out} ({info['graph']}, {info['exporter']}"
          f"{', ' + info['quantized'] if info['quantized'] else ''}; input history (batch, {info['max_len']}) int64, "
          f"output {what}); id map {idmap_path(args.out)}")
    return 0
