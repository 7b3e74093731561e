"""``frood verify`` (the twin of POST /verify), ``frood extract --all-faces --components`` and ``frood quality``,
run as a user runs them."""

from __future__ import annotations

import json

import numpy as np

from tests.test_cli import frood


def test_verify_two_photos_a_photo_and_an_embedding_and_a_blank(faces_dir, held_out_files, identities, tmp_path):
    people = {}
    for file in held_out_files:
        people.setdefault(identities[file], []).append(file)
    first, second = next(files for files in people.values() if len(files) >= 2)[:2]
    same = frood("verify", str(faces_dir / first), str(faces_dir / second), "--json")
    answer = json.loads(same.stdout)
    assert answer["similarity"] > answer["threshold"] and same.returncode == (0 if answer["verified"] is not None else 3)
    extracted = json.loads(frood("extract", str(faces_dir / second), "--json").stdout)
    np.save(tmp_path / "second.npy", np.asarray(extracted["feature"], dtype=np.float32))
    mixed = json.loads(frood("verify", str(faces_dir / first), str(tmp_path / "second.npy"), "--json").stdout)
    assert abs(mixed["similarity"] - answer["similarity"]) < 1e-3 and mixed["img2"]["input"] == "embedding"
    assert "components" not in mixed["img1"]  # only when asked: lines stay small
    reported = json.loads(frood("verify", str(faces_dir / first), str(tmp_path / "second.npy"), "--json", "--components").stdout)
    assert reported["img1"]["components"]["components"]["HeadPoseYaw"]["unit"] and reported["img2"]["components"] is None
    assert reported["similarity"] == mixed["similarity"]
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 120, 120)).save(tmp_path / "blank.png")
    blank = frood("verify", str(faces_dir / first), str(tmp_path / "blank.png"), "--json")
    assert blank.returncode == 3 and json.loads(blank.stdout)["decision"] == "retake_b"
    wrong = frood("verify", str(faces_dir / first), str(tmp_path / "second.npy"), "--threshold", "2")
    assert wrong.returncode != 0 and "threshold must be" in wrong.stderr and "Traceback" not in wrong.stderr


def test_extract_every_face_with_components(faces_dir):
    answer = json.loads(frood("extract", str(faces_dir / "couple.jpg"), "--json", "--all-faces", "--components").stdout)
    assert len(answer["faces"]) == answer["faces_found"] >= 2
    assert answer["components"]["components"]["HeadPoseRoll"]["unit"]
    assert all(face["components"]["unified_quality"] is not None for face in answer["faces"])


def test_quality_report_as_csv(faces_dir, tmp_path):
    out = tmp_path / "report.csv"
    run = frood("quality", str(faces_dir / "img3.jpg"), "--csv", str(out))
    assert run.returncode == 0, run.stderr
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert "quality_score" in header and "HeadPoseYaw" in header
