"""ganserve export --model MODEL --format onnx|pt2|mar --out PATH [--opset N] [--precision fp32|fp16]
[--backend eager|onnx|pt2] [--force]   (``ganserve export MODEL ...``, the older spelling, works too)

The graph formats are the registered ones (ganserve.export.formats: onnx, pt2, and any a package declares).
onnx / pt2: a folder with one graph per part (StyleGAN2: mapping.*, synthesis.*), the constants and a manifest; each
graph is checked against eager PyTorch on fresh random inputs before the folder is renamed into place.
mar: a TorchServe archive running the given --backend (eager: the checkpoint; onnx / pt2: the exported graphs).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Iterator

from ganserve.precision import PRECISIONS

GRAPH_PRECISIONS = ("fp32", "fp16")  # a graph holds one dtype


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a model to ONNX, torch.export (.pt2) or a TorchServe archive (.mar)")
    # --model as every command spells it; the positional MODEL of earlier versions still works.
    p.add_argument("--model", dest="model", default=None, metavar="NAME|PATH", help="model name or checkpoint path")
    p.add_argument("model_arg", nargs="?", default=None, metavar="MODEL", help="the same as --model (old spelling)")
    formats = _formats()
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help=" | ".join(formats) + ": " + "; ".join(f"{n}: {d}" for n, d in formats.items()))  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (onnx, pt2) or .mar file / model-store folder (mar)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    # --precision is the spelling sample / serve / ui / bench use.
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="onnx / pt2 (and mar with a graph backend): fp32, or fp16 for the synthesis graph in float16 "
                        "(the mapping stays fp32); mar with --backend eager: any, run by the handler as "
                        "`ganserve serve --precision` (default: fp32)")  # fmt: skip
    p.add_argument("--fp16", action="store_true", help="the same as --precision fp16")
    runs = ["eager", *(name for name in formats if name != "mar")]
    p.add_argument("--backend", default=None, help=f"mar only: what the archive runs: {' | '.join(runs)}")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--batch-size", type=int, default=None, help="mar only: TorchServe batchSize")
    p.add_argument("--device", default=None, help="mar only: TorchServe deviceType, cpu | gpu")
    return p


def _formats() -> dict[str, str]:
    """Every export format with its one-line description: the registered graph formats, then the archive."""
    try:
        from ganserve.export.formats import ARCHIVE, graph_formats
    except ImportError:  # an install without the export package: the command says so when run
        return {"mar": "TorchServe archive"}
    # a plugin's description goes into argparse's help, which %-formats it
    graph = {name: (fmt.description or f"{name} graphs").replace("%", "%%") for name, fmt in graph_formats().items()}
    return {**graph, ARCHIVE: "a TorchServe archive (.mar) running --backend"}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter warns about things that do not concern a user (missing torchvision ops, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.export import ExportError, export_formats, export_graphs
    from ganserve.export.bundle import check_output

    if (args.model is None) == (args.model_arg is None):
        raise ExportError("give the model once: --model NAME|PATH (or the positional MODEL)")
    args.model = args.model or args.model_arg
    if args.format not in export_formats():
        raise ExportError(f"--format: unknown format '{args.format}' (formats: {', '.join(export_formats())})")
    if args.fp16 and args.precision == "fp32":
        raise ExportError("--fp16 contradicts --precision fp32: give one of them")
    precision = "fp16" if args.fp16 else args.precision or "fp32"
    graphs = args.format != "mar" or (args.backend or "eager") != "eager"
    if graphs and precision not in GRAPH_PRECISIONS:
        raise ExportError(f"--precision {precision}: exported graphs are fp32 or fp16 (an eager .mar takes any "
                          f"precision: --format mar --backend eager)")  # fmt: skip
    fp16 = graphs and precision == "fp16"
    if args.format != "mar" and (args.backend or args.batch_size or args.device):
        raise ExportError("--backend, --batch-size and --device apply to --format mar only")
    if args.format != "mar":  # a .mar's target depends on the model name: export_mar checks it
        check_output(args.out, args.force)
    with _quiet_exporter():
        if args.format == "mar":
            from ganserve.export.mar import export_mar

            result = export_mar(args.model, args.out, backend=args.backend or "eager", opset=args.opset,
                                fp16=fp16, precision="fp32" if graphs else precision, force=args.force,
                                batch_size=args.batch_size, device_type=args.device)  # fmt: skip
        else:
            model = ganserve.load(args.model)
            result = export_graphs(model, args.format, args.out, opset=args.opset, fp16=fp16, force=args.force)
    print(f"wrote {result.path}")
    width = max(len(name) for name, _ in result.files)
    for name, size in result.files:
        print(f"  {name:<{width}}  {_size(size):>10}")
    if result.parity:
        precision = "fp16 synthesis" if fp16 else "fp32"
        print(f"parity vs eager PyTorch ({precision}; max abs error on fresh random inputs):")
        for graph, errors in result.parity.items():
            cells = "  ".join(f"batch {b}: {e:.2e}" for b, e in errors.items())
            print(f"  {graph:<10} {cells}")
    return 0
