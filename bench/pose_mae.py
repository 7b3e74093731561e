"""Benchmark (not a test): how right is the head pose behind HeadPoseYaw/Pitch/Roll? Prints JSON.

    python bench/pose_mae.py [--data-root ../shared/data] [--yale-per-identity 4] [--wild 15]

Ground truth we have (docs/quality.md, *ISO/IEC 29794-5 components*):
- Extended Yale B, pose P00 (every file here is P00: the frontal pose, yaw = pitch = roll = 0 by the
  capture protocol), under near-frontal light (|azimuth| ≤ 25°, |elevation| ≤ 20°): absolute error of
  each angle against 0.
- Known in-plane rotations: in-the-wild photos rotated by ±20° about the eye midpoint: the error of the
  roll change against ±20° (the roll truth is exact; the photo's own roll cancels).
- Mirror symmetry (a consistency check, not ground truth): a mirrored photo's yaw is minus the photo's,
  so |yaw(photo) + yaw(mirror)| / 2 is a lower bound on the yaw error.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.models import create_pipeline  # noqa: E402

YALE = re.compile(r"_P00A([+-]\d+)E([+-]\d+)\.png$")


def main_face(pipeline, rgb: np.ndarray):
    result = pipeline.analyze(np.ascontiguousarray(rgb))
    return result.faces[0] if result.faces else None


def yale(pipeline, root: Path, per_identity: int) -> dict:
    errors = {"yaw": [], "pitch": [], "roll": []}
    for folder in sorted(path for path in (root / "dark").iterdir() if path.is_dir()):
        chosen = []
        for file in sorted(folder.glob("*.png")):
            match = YALE.search(file.name)
            if match and abs(int(match.group(1))) <= 25 and abs(int(match.group(2))) <= 20:
                chosen.append(file)
        for file in chosen[:per_identity]:
            face = main_face(pipeline, cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB))
            if face is not None:
                for angle in errors:
                    errors[angle].append(abs(face.pose[angle]))
    return {"faces": len(errors["yaw"]), **{f"{angle}_mae_deg": round(float(np.mean(v)), 2) for angle, v in errors.items()},
            **{f"{angle}_p90_deg": round(float(np.percentile(v, 90)), 2) for angle, v in errors.items()}}


def wild(pipeline, root: Path, count: int) -> dict:
    with open(root / "wild" / "identities.csv", newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    files = files[:: max(1, len(files) // count)][:count]
    roll_errors, signs, flip = [], [], []
    for file in files:
        rgb = cv2.cvtColor(cv2.imread(str(root / "wild" / file)), cv2.COLOR_BGR2RGB)
        face = main_face(pipeline, rgb)
        if face is None:
            continue
        centre = np.mean(np.asarray(face.landmarks)[:2], axis=0)
        for degrees in (20.0, -20.0):
            matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, 1.0)
            turned = main_face(pipeline, cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT))
            if turned is not None:
                move = turned.pose["roll"] - face.pose["roll"]
                roll_errors.append(abs(abs(move) - 20.0))
                signs.append(np.sign(move) == -np.sign(degrees))  # cv2's positive angle turns the photo anticlockwise
        mirrored = main_face(pipeline, rgb[:, ::-1])
        if mirrored is not None:
            flip.append(abs(face.pose["yaw"] + mirrored.pose["yaw"]) / 2)
    return {
        "photos": len(files),
        "roll_change_mae_deg": round(float(np.mean(roll_errors)), 2),
        "roll_sign_agrees": f"{int(np.sum(signs))}/{len(signs)}",
        "yaw_mirror_asymmetry_deg": round(float(np.mean(flip)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--yale-per-identity", type=int, default=4)
    parser.add_argument("--wild", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline = create_pipeline("default", device="cpu")
    report = {"yale_b_frontal": yale(pipeline, args.data_root, args.yale_per_identity), "wild_rotations": wild(pipeline, args.data_root, args.wild)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
