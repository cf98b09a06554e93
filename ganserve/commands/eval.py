"""ganserve eval --model M [--n 2000] [--metrics fid,kid,pr,classifier] [--psi 1.0] [--out r.json] [--json] [--record]
ganserve eval --baseline --data fashion-mnist [--n 1000]       (the real train-vs-test floor alone)
ganserve eval --train-classifier --out checkpoints/classifier-fashion-32.safetensors

Measured quality: FID, KID and k-NN precision / recall / density / coverage of N generated images against the model's
real test data (Inception-v3 features with the FID weights, offline: the ``eval`` extra), and for class-conditional
models the accuracy of a classifier trained here on each class's samples. It prints a summary (--json: the results as
one JSON object, as every command's --json does) and writes the results to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ganserve.commands import CommandError

README_BEGIN = "<!-- ganserve eval: begin -->"
README_END = "<!-- ganserve eval: end -->"


def _metrics(text: str) -> tuple[str, ...]:
    from ganserve.eval.evaluate import METRICS

    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown metrics {bad}; choose from {','.join(METRICS)}")
    return names


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="measure a model: FID, KID, precision/recall/density/coverage, class accuracy",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", help="model name or checkpoint path")
    p.add_argument("--n", type=int, default=2000, help="generated images, and as many real ones (default: 2000)")
    from ganserve.eval.evaluate import METRICS

    p.add_argument("--metrics", type=_metrics, default=METRICS,
                   help=f"comma-separated: {','.join(METRICS)} (default: all)")  # fmt: skip
    p.add_argument("--psi", type=float, default=1.0, help="truncation_psi passed to every request (default: 1.0)")
    p.add_argument("--seed-offset", type=int, default=0, help="seeds are OFFSET .. OFFSET+N-1 (default: 0)")
    p.add_argument("--batch-size", type=int, default=50, help="generator and Inception batch (default: 50)")
    p.add_argument("--data", help="reference data: fashion-mnist or a folder (default: the checkpoint's data set)")
    p.add_argument("--split", choices=["test", "train"], default="test", help="reference split (default: test)")
    p.add_argument("--real-seed", type=int, default=None, help="a seeded subset of real images (default: the first N)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage (default: 5)")
    p.add_argument("--classifier", help="classifier checkpoint (default: the bundled one for the data set)")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also measure N real training images against the same reference: the floor at this N",
    )
    p.add_argument("--out", metavar="PATH", help="write the results here as JSON (--train-classifier: the classifier's "
                   ".safetensors)")  # fmt: skip
    # --json is a print switch in every command; its old value form (--json PATH, a file) still works, as --out PATH.
    p.add_argument("--json", nargs="?", const=True, default=False, metavar="PATH",
                   help="print the results as one JSON object instead of a summary (the old form --json PATH writes "
                        "PATH, as --out PATH does)")  # fmt: skip
    p.add_argument(
        "--record",
        action="store_true",
        help="write the results into the model card: the checkpoint's metadata and checkpoints/README.md",
    )
    p.add_argument("--readme", default=None, help="README to record into (default: README.md beside the checkpoint)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", action="store_true", help="recompute real images' features (cached by default)")
    g = p.add_argument_group("training the classifier")
    g.add_argument("--train-classifier", action="store_true", help="train the class-check classifier and save it")
    g.add_argument("--epochs", type=int, default=8, help="classifier training epochs (default: 8)")
    g.add_argument("--seed", type=int, default=0, help="seeds the classifier's training (default: 0)")
    # What the command line was, rebuilt from the parsed options (also right when called as ganserve.cli.main(argv))
    _FLAGS.clear()
    _FLAGS.extend((a.option_strings[0], a.dest, a.default, a.nargs) for a in p._actions if a.option_strings
                  and a.dest != "help")  # fmt: skip
    return p


_FLAGS: list[tuple[str, str, Any, Any]] = []


def command_line(args: argparse.Namespace) -> str:
    """``ganserve eval`` plus every option that differs from its default, in the parser's order; the settings that
    define a result are always written, so the record stays a recipe if a default changes."""
    always = {"epochs", "seed"} if args.train_classifier else {"n", "psi"}
    argv = ["ganserve", "eval"]
    for flag, dest, default, nargs in _FLAGS:
        value = getattr(args, dest, default)
        if value == default and dest not in always:
            continue
        if nargs == 0 or value is True:  # store_true, --json
            argv.append(flag)
        else:
            argv += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return shlex.join(argv)


def _old_json_path(args: argparse.Namespace) -> None:
    """``--json PATH`` (its old meaning) becomes ``--out PATH`` with a summary printed, as before."""
    if isinstance(args.json, str):
        if args.out is not None and args.out != args.json:
            raise CommandError(f"--json {args.json} (old spelling of --out) and --out {args.out}: give the file once")
        args.out, args.json = args.json, False


def run(args: argparse.Namespace) -> int:
    _old_json_path(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.train_classifier:
        return _train_classifier(args)
    if args.model is None and not (args.baseline and args.data):
        raise CommandError("give --model NAME|PATH (or --baseline --data fashion-mnist|FOLDER for the real floor)")
    if args.record and args.model is None:
        raise CommandError("--record writes into a model's card: give --model")
    from ganserve.eval.evaluate import EvalOptions, evaluate
    from ganserve.eval.features import weights_path

    weights_path()  # a missing 'eval' extra fails here, before minutes of sampling
    opts = EvalOptions(
        n=args.n, metrics=args.metrics, truncation_psi=args.psi, batch_size=args.batch_size,
        seed_offset=args.seed_offset, data=args.data, split=args.split, real_seed=args.real_seed, k=args.k,
        classifier=args.classifier, baseline=args.baseline, device=args.device, progress=not args.no_progress,
        cache=not args.no_cache,
    )  # fmt: skip
    model = None
    if args.model is not None:
        import ganserve

        model = ganserve.load(args.model, device=args.device)
    result = evaluate(model, opts)
    result["command"] = command_line(args)
    result["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else summary(result))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    if args.record:
        record(model.checkpoint_path, result, args.readme)
        print(f"recorded in {model.checkpoint_path} and {_readme_path(model.checkpoint_path, args.readme)}",
              file=sys.stderr)  # fmt: skip
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    if not args.out:
        raise CommandError("--train-classifier needs --out PATH.safetensors")
    from ganserve.data import load_fashion_mnist
    from ganserve.eval.classifier import TrainSettings, save_classifier, train_classifier

    data = args.data or "fashion-mnist"
    if data != "fashion-mnist":
        raise CommandError("--train-classifier trains on fashion-mnist (the labelled set with a held-out test split)")
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    train, test = load_fashion_mnist(32, split="train"), load_fashion_mnist(32, split="test")
    result = train_classifier(train, test, settings, progress=not args.no_progress)
    command = command_line(args)
    save_classifier(args.out, result, data, settings, command)
    print(json.dumps({"out": args.out, "test_accuracy": result.test_accuracy, "seconds": round(result.seconds, 1),
                      "per_class_test_accuracy": result.per_class_test_accuracy}, indent=2))  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The model card


def _fmt(v: Any, digits: int = 3) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def summary(r: dict[str, Any]) -> str:
    lines = []
    if "fid" in r or "precision" in r:
        lines.append(_line(r.get("model", "real"), r))
    if isinstance(r.get("baseline"), dict) and "skipped" not in r["baseline"]:
        lines.append(_line("real train (floor)", r["baseline"]))
    c = r.get("classifier")
    if isinstance(c, dict):
        if "skipped" in c:
            lines.append(f"classifier: {c['skipped']}")
        else:
            real = _fmt(c["real_test_accuracy"])
            lines.append(f"classifier: {c['accuracy']:.3f} on generated samples (real test {real})")
    return "\n".join(lines)


def _line(name: str, r: dict[str, Any]) -> str:
    kid = r.get("kid", {}).get("mean") if isinstance(r.get("kid"), dict) else None
    parts = [f"FID {_fmt(r.get('fid'), 1)}", f"KID {_fmt(kid, 4)}"] + [
        f"{k} {_fmt(r.get(k))}" for k in ("precision", "recall", "density", "coverage")
    ]
    return f"{name}: " + ", ".join(parts)


def _record_entry(r: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint keeps: settings that define the measurement, and its numbers (with N, always)."""
    keep = ("n", "seeds", "truncation_psi", "noise_mode", "reference", "features", "fid", "kid", "precision", "recall",
            "density", "coverage", "k", "classifier", "baseline", "command", "date")  # fmt: skip
    return {k: r[k] for k in keep if k in r}


def _same_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("n", "seeds", "truncation_psi", "noise_mode", "reference")
    return all(a.get(k) == b.get(k) for k in keys)


def record(checkpoint: str | Path, result: dict[str, Any], readme: str | Path | None = None) -> None:
    """Add (or replace, for the same N / seeds / psi / reference) this measurement in the checkpoint's metadata
    ``evaluation`` list, and rewrite the evaluation table in the README beside it."""
    from ganserve.checkpoint import read_metadata, update_metadata

    entry = _record_entry(result)
    previous = read_metadata(checkpoint).get("evaluation") or []
    if not isinstance(previous, list):
        previous = [previous]
    records = [e for e in previous if not _same_setting(e, entry)] + [entry]
    update_metadata(checkpoint, {"evaluation": records})
    path = _readme_path(checkpoint, readme)
    if path.is_file():
        write_readme_table(path, Path(checkpoint).stem, records)


def _readme_path(checkpoint: str | Path, readme: str | Path | None) -> Path:
    return Path(readme) if readme else Path(checkpoint).with_name("README.md")


def readme_rows(model: str, records: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in records:
        ref = e.get("reference", {})
        # A classifier-only measurement has no real reference set: its ceiling is the real test accuracy.
        against = f"{ref['dataset']} {ref.get('split', '?')} ({ref.get('n', '?')})" if ref.get("dataset") else "—"
        kid = e.get("kid", {}).get("mean") if isinstance(e.get("kid"), dict) else None
        c = e.get("classifier") if isinstance(e.get("classifier"), dict) else {}
        acc = f"{c['accuracy']:.3f} (real {_fmt(c.get('real_test_accuracy'))})" if "accuracy" in c else "—"
        cells = [model, str(e.get("n")), _fmt(e.get("truncation_psi"), 2), against, _fmt(e.get("fid"), 1),
                 _fmt(kid, 4), *(_fmt(e.get(k)) for k in ("precision", "recall", "density", "coverage")), acc,
                 e.get("date", "")]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
        b = e.get("baseline")
        if isinstance(b, dict) and "fid" in b:
            bkid = b.get("kid", {}).get("mean") if isinstance(b.get("kid"), dict) else None
            cells = [f"real train ({b['images'].get('n')}), the floor", str(b["images"].get("n")), "—", against,
                     _fmt(b.get("fid"), 1), _fmt(bkid, 4),
                     *(_fmt(b.get(k)) for k in ("precision", "recall", "density", "coverage")), "—",
                     e.get("date", "")]  # fmt: skip
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_readme_table(path: Path, model: str, records: list[dict[str, Any]]) -> None:
    """Keep one marked table per model in the README: ``<!-- ganserve eval: begin MODEL -->`` .. end."""
    from ganserve.checkpoint import atomic_write_bytes

    begin, end = f"{README_BEGIN[:-4]} {model} -->", f"{README_END[:-4]} {model} -->"
    columns = ["model", "N", "psi", "against", "FID", "KID", "precision", "recall", "density", "coverage",
               "class accuracy", "date"]  # fmt: skip
    header = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    block = "\n".join([begin, *header, *readme_rows(model, records), end])
    text = path.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n### Measured: {model}\n\n{block}\n"
    atomic_write_bytes(path, text.encode())
