"""``frood verify A B [--threshold T] [--json [--components]]``: the twin of ``POST /verify``. Each side is an image, or a
``.npy`` / ``.json`` file holding an embedding of the served model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from errors import FroodError
from schemas.verify import verify_json


def _side(path: str) -> bytes | list[float]:
    file = Path(path)
    if not file.is_file():
        raise FroodError(f"{path}: no such file")
    if file.suffix.lower() == ".npy":
        return [float(value) for value in np.load(file, allow_pickle=False).ravel()]
    if file.suffix.lower() == ".json":
        data = json.loads(file.read_text(encoding="utf-8"))
        values = data.get("feature") if isinstance(data, dict) else data  # a frood extract --json answer works too
        if not isinstance(values, list):
            raise FroodError(f"{path}: a JSON embedding is a list of numbers (or an object with a 'feature' list)")
        return [float(value) for value in values]
    return file.read_bytes()


def cmd_verify(args: argparse.Namespace) -> int:
    from logs import configure_logging
    from service.verification import verify

    configure_logging(quiet=args.json)
    result = verify(_side(args.first), _side(args.second), threshold=args.threshold, model=args.model, components=args.components)
    payload = verify_json(result, components=args.components)
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
    else:
        similarity = "–" if result.similarity is None else f"{result.similarity:.3f}"
        print(f"verified: {payload['verified']}  ({payload['message']['en']} / {payload['message']['zh']})")
        print(f"similarity {similarity} (threshold {result.threshold:.3f}, {result.model})")
        for label, side in (("1", payload["img1"]), ("2", payload["img2"])):
            for reason in side["reasons"]:
                print(f"  {label}: {reason['en']} / {reason['zh']}")
    return 0 if result.verified is not None else 3  # 3: a side cannot be trusted (retake or review), as "no face"


def add_verify_parser(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="1:1: are two images (or embeddings) the same person? (the twin of POST /verify)")
    verify.add_argument("first", help="an image, or a .npy / .json embedding")
    verify.add_argument("second", help="an image, or a .npy / .json embedding")
    verify.add_argument("--threshold", type=float, default=None, help="cosine similarity in [-1, 1] (default: the model's match threshold)")
    verify.add_argument("--json", action="store_true")
    verify.add_argument(
        "--components", action="store_true", help="with --json: each image side's ISO/IEC 29794-5 component report (as POST /verify?components=true)"
    )
    verify.set_defaults(func=cmd_verify)
