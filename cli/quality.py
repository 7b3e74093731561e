"""``frood quality IMG... [--csv out.csv] [--json]``: the ISO/IEC 29794-5 component report of photos.

For enrolment photo checks: every face's components (native value, quality 0–100, pass/fail where a
requirement exists), the calibrated score as the unified 0–100 quality, and the reasons. Exit status 0,
or 2 when an image could not be read.
"""

from __future__ import annotations

import argparse
import csv
import json
from typing import Any

from schemas.component_messages import component_label
from schemas.components import components_csv_rows, components_json
from schemas.messages import describe


def report_rows(reports: list[Any]) -> list[dict[str, Any]]:
    """One dict per face (and one per unreadable or faceless image) from ``service.quality`` reports."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        if report.error is not None:
            rows.append({"image": report.name, "face": None, "error": str(report.error)})
            continue
        if not report.faces:
            rows.append({"image": report.name, "face": None, "reasons": ["no_face"], "components": {}})
            continue
        for number, item in enumerate(report.faces):
            quality = item.face.quality
            rows.append(
                {
                    "image": report.name,
                    "face": number,
                    "bbox": [round(v, 1) for v in item.face.bbox],
                    "quality_score": None if quality is None else round(float(quality), 4),
                    "reasons": list(item.face.reasons),
                    "derived_reasons": item.derived_reasons,
                    **components_json(item.components),
                }
            )
    return rows


def _print_text(rows: list[dict[str, Any]], language: str) -> None:
    for row in rows:
        if "error" in row:
            print(f"{row['image']}: {row['error']}")
            continue
        if row["face"] is None:
            print(f"{row['image']}: no face found")
            continue
        score = "n/a" if row["quality_score"] is None else f"{row['quality_score']:.2f}"
        print(f"{row['image']} face #{row['face'] + 1}: OOD {score}, unified quality {row['unified_quality']}")
        for reason in describe(row["reasons"]):
            print(f"  reason: {reason[language]}")
        for name, component in row["components"].items():
            mark = {True: "pass", False: "FAIL", None: "    "}[component["passes"]]
            print(f"  {mark}  {component['quality']:>3}  {name:<29} {component['value']:>10.4g} {component['unit']:<12} {component_label(name, language)}")


def cmd_quality(args: argparse.Namespace) -> int:
    from logs import configure_logging
    from service.models import create_pipeline
    from service.quality import analyze_components

    configure_logging(quiet=args.json)
    reports = analyze_components(args.images, create_pipeline(args.model, device=args.device))
    rows = report_rows(reports)
    if args.csv:
        header, flat = components_csv_rows([row for row in rows if "error" not in row])
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(flat)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        _print_text(rows, args.language)
        if args.csv:
            print(f"CSV written to {args.csv}")
    return 2 if any("error" in row for row in rows) else 0


def add_quality_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quality", help="ISO/IEC 29794-5 component quality report of one or many photos")
    parser.add_argument("images", nargs="+", metavar="IMG")
    parser.add_argument("--csv", help="also write one row per face to this CSV file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--model", default=None, help="recognition model (default: the configured one)")
    parser.add_argument("--language", choices=["en", "zh"], default="en", help="language of the labels")
    parser.set_defaults(func=cmd_quality)
