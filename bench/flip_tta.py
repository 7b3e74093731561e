"""Benchmark (not a test): does flip test-time augmentation pay for itself? Prints JSON.

    python bench/flip_tta.py [--data-root ../shared/data] [--per-identity 6]

Feature with TTA = normalise(f(face) + f(mirrored face)). Measured on the held-out in-the-wild
identities of the committed calibration split (never fitted): TAR at the FMRs 1e-3 and 1e-4 (thresholds
re-derived for each variant on the same impostor pairs, so the comparison is fair), the equal error
rate, and the extra milliseconds per face.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import metrics  # noqa: E402
from evaluation.heldout import heldout_photos  # noqa: E402
from service.models import create_pipeline  # noqa: E402


def rates(features: np.ndarray, labels: np.ndarray) -> dict:
    upper = np.triu_indices(len(labels), 1)
    scores = (features @ features.T)[upper]
    genuine = labels[upper[0]] == labels[upper[1]]
    out = {"eer": round(metrics.eer(scores, genuine)[0], 4)}
    for fmr in (1e-3, 1e-4):
        tar, threshold = metrics.tar_at_far(scores, genuine, fmr)
        out[f"tar_at_fmr_{fmr:g}"] = round(float(tar), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--per-identity", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline = create_pipeline()
    photos = heldout_photos(Path(args.data_root), pipeline.scorer.params, "wild", per_identity=args.per_identity)
    plain, flipped, labels, extra_ms, base_ms = [], [], [], [], []
    for photo in photos:
        result = pipeline.analyze(photo.path)
        if not result.faces:
            continue
        face = result.face
        start = time.perf_counter()
        mirror = pipeline.embedder.embed(face.aligned[None, :, ::-1].copy()).features[0]
        extra_ms.append((time.perf_counter() - start) * 1000)
        base_ms.append(result.timings_ms["total"])
        combined = face.feature + mirror
        plain.append(face.feature)
        flipped.append(combined / np.linalg.norm(combined))
        labels.append(photo.identity)
    labels_array = np.array(labels)
    report = {
        "photos": len(labels),
        "identities": len(set(labels)),
        "plain": rates(np.stack(plain), labels_array),
        "flip_tta": rates(np.stack(flipped), labels_array),
        "extra_ms_per_face_p50": round(float(np.median(extra_ms)), 2),
        "end_to_end_ms_p50": round(float(np.median(base_ms)), 2),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
