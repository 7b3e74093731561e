"""``frood eval``: the command-line shell over :mod:`evaluation.run` and :mod:`evaluation.report`.

The eval-specific model flag is ``--eval-model`` because ``--model`` is already ``frood``'s global
option (the default model); without ``--eval-model`` the global model is evaluated.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from errors import FroodError
from service.models import create_pipeline
from settings import get_settings


def load_dataset(args: argparse.Namespace) -> Any:
    """The dataset named by exactly one of --identities / --folders / --pairs."""
    from evaluation import datasets

    if args.impostor_ratio <= 0:
        raise FroodError(f"--impostor-ratio must be > 0, got {args.impostor_ratio}")
    if args.pairs:
        return datasets.load_pairs(args.pairs, args.data_root)
    if args.folders:
        return datasets.load_identity_folders(args.folders, args.seed, args.impostor_ratio, args.max_impostors)
    return datasets.load_identities_csv(args.identities, args.data_root, args.seed, args.impostor_ratio, args.max_impostors)


def cmd_eval(args: argparse.Namespace) -> int:
    """Load the dataset, evaluate every model (and/or the server), write the reports, print the summary."""
    from evaluation.report import terminal_table, write_reports
    from evaluation.run import run_evaluation
    from logs import configure_logging

    configure_logging(quiet=False)
    # One warning per tight crop or degraded copy would bury the progress bars; the report counts no-face images.
    logging.getLogger("frood.detect").setLevel(logging.ERROR)
    if args.server_url and not args.model_name:
        raise FroodError("--server-url needs --model-name (the model_name form field sent to /extract)")
    if args.model_name and not args.server_url:
        raise FroodError("--model-name is for a remote server; give --server-url too (local models: --eval-model NAME)")
    if args.n_boot < 1:
        raise FroodError(f"--n-boot must be >= 1, got {args.n_boot}")
    models = args.eval_model if args.eval_model else ([] if args.server_url else [args.model or "default"])
    if args.heldout:
        return cmd_eval_heldout(args, models)
    dataset = load_dataset(args)
    print(
        f"dataset {dataset.name}: {len(dataset.images)} images, {len(dataset.pairs)} pairs ({dataset.n_genuine} genuine, {dataset.n_impostor} impostor)",
        file=sys.stderr,
    )
    report = run_evaluation(
        dataset,
        models,
        device=args.device,
        server_url=args.server_url,
        model_name=args.model_name,
        match_threshold=args.match_threshold,
        seed=args.seed,
        n_boot=args.n_boot,
        ood=not args.no_ood,
        ood_limit=args.ood_limit,
        crops=args.crops,
        api_key=args.api_key or get_settings().frood_api_key or None,
        pipeline_factory=lambda name: create_pipeline(name, device=args.device),
    )
    written = write_reports(report, Path(args.out), dataset.pairs)
    print(terminal_table(report))
    print(f"wrote {written['json']}, {written['html']} and {len(written['png'])} PNG plots ({written['png_backend']}) in {args.out}")
    return 0


def cmd_eval_heldout(args: argparse.Namespace, models: list[str]) -> int:
    """``--heldout DATA_ROOT``: the quality score against its baselines on the calibration's held-out split."""
    import json

    from evaluation.heldout import heldout_table, run_heldout
    from evaluation.report import jsonable

    if args.server_url:
        raise FroodError("--heldout measures a local model's quality score; it cannot be combined with --server-url")
    if args.splits < 1:
        raise FroodError(f"--splits must be >= 1, got {args.splits}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in models:
        pipeline = create_pipeline(name, device=args.device)
        report = run_heldout(pipeline, Path(args.heldout), args.heldout_per_identity, args.seed, splits=args.splits)
        (out / f"heldout-{pipeline.model}.json").write_text(json.dumps(jsonable(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(heldout_table(report))
        print(f"wrote {out / f'heldout-{pipeline.model}.json'}")
    return 0


def add_eval_parser(subparsers: Any) -> None:
    """Add ``frood eval`` to the ``frood`` sub-command parsers."""
    parser = subparsers.add_parser(
        "eval",
        help="verification, quality (EDC), OOD and speed report on a labelled dataset",
        description="Evaluate one or more models (or a remote /extract server) on labelled pairs; writes report.json, report.html and PNG plots.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--identities", metavar="DIR_OR_CSV", help="identities.csv (file,identity) or a folder holding one; pairs are generated")
    source.add_argument("--folders", metavar="DIR", help="DIR/<identity>/*.jpg; pairs are generated")
    source.add_argument("--pairs", metavar="FILE", help="file_x,file_y,Decision CSV or an LFW pairs.txt")
    source.add_argument("--heldout", metavar="DATA_ROOT", help="the calibration data root: score vs baselines on its held-out split (docs/quality.md)")
    parser.add_argument("--heldout-per-identity", type=int, metavar="N", help="--heldout: at most N photos per identity and kind (seeded)")
    parser.add_argument(
        "--splits",
        type=int,
        default=1,
        metavar="N",
        help="--heldout: also the in-the-wild EDC over N identity splits (the params' seed and the next N-1), mean ± sd",
    )
    parser.add_argument("--data-root", metavar="DIR", help="where pair/identity paths are relative to (default: the file's folder)")
    parser.add_argument("--eval-model", action="append", metavar="NAME", help="a model to evaluate (repeatable; default: frood's --model)")
    parser.add_argument("--server-url", metavar="URL", help="evaluate a remote server too, e.g. http://host:7860/extract")
    parser.add_argument("--model-name", metavar="NAME", help="the model_name sent to the server")
    parser.add_argument("--match-threshold", type=float, help="remote mode: the server model's match threshold (for accuracy at it)")
    parser.add_argument("--api-key", help="remote mode: sent as X-API-Key (default: FROOD_API_KEY)")
    parser.add_argument("--crops", action="store_true", help="local models analyse the prepared 256-px PNG crop, as a server would receive it")
    parser.add_argument("--out", default="report", metavar="DIR", help="output folder (default: report/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for pair sampling, folds, bootstrap and OOD image choice")
    parser.add_argument("--impostor-ratio", type=float, default=3.0, help="generated pairs: impostor pairs per genuine pair (default 3)")
    parser.add_argument("--max-impostors", type=int, help="generated pairs: an absolute number of impostor pairs instead")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (default 1000)")
    parser.add_argument("--ood-limit", type=int, metavar="N", help="OOD: corrupt only N (seeded) images (default: all)")
    parser.add_argument("--no-ood", action="store_true", help="skip the OOD corruption measurement")
    parser.set_defaults(func=cmd_eval)
