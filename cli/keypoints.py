"""``frood keypoints IMG [--json] [--output-image out.jpg]``: people and their 17 COCO keypoints."""

from __future__ import annotations

import argparse
import json

from schemas.keypoints import keypoints_json
from service.keypoints import COCO_KEYPOINTS


def cmd_keypoints(args: argparse.Namespace) -> int:
    from logs import configure_logging
    from service import keypoints as service
    from settings import get_settings

    configure_logging(quiet=args.json)
    settings = get_settings()
    threshold = settings.keypoints_det_threshold if args.det_threshold is None else args.det_threshold
    engine = service.get_engine()
    result = engine.detect(args.image, det_threshold=threshold, name=args.image)
    if args.output_image:
        service.drawn_image(result).save(args.output_image, quality=90)
    payload = {"image": args.image, **keypoints_json(result)}
    if args.json:
        print(json.dumps(payload))
        return 0
    print(f"{args.image}: {len(result.persons)} person(s) at detThreshold {threshold:.2f} ({result.width}×{result.height})")
    for number, person in enumerate(result.persons, 1):
        box = ", ".join(f"{v:.0f}" for v in person.bbox)
        print(f"  #{number} box [{box}]  det {person.det_score:.3f}  keypoints {person.kpt_score:.3f}")
        sure = [f"{name} ({x:.0f}, {y:.0f})" for name, (x, y, s) in zip(COCO_KEYPOINTS, person.keypoints) if s >= settings.keypoints_kpt_threshold]
        print(f"     {len(sure)}/17 keypoints at score ≥ {settings.keypoints_kpt_threshold}: " + "; ".join(sure[:4]) + (" …" if len(sure) > 4 else ""))
    if args.output_image:
        print(f"  skeletons drawn to {args.output_image}")
    return 0


def add_keypoints_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keypoints", help="people boxes and 17 COCO body keypoints in an image")
    parser.add_argument("image")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--output-image", help="save the image with the skeletons drawn here")
    parser.add_argument("--det-threshold", type=float, default=None, help="person score threshold (default KEYPOINTS_DET_THRESHOLD)")
    parser.set_defaults(func=cmd_keypoints)
