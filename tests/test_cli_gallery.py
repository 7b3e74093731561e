"""`frood index build|add|remove|info` and `frood identify` on a PaddleX-layout folder of real photos."""

from __future__ import annotations

import json

from PIL import Image

from tests.test_cli import frood


def test_index_build_identify_add_remove(faces_dir, identities, tmp_path):
    root = tmp_path / "gallery_src"
    by_identity: dict[str, list[str]] = {}
    for file, identity in sorted(identities.items()):
        by_identity.setdefault(identity, []).append(file)
    chosen = sorted(by_identity)[:3]
    lines = []
    for identity in chosen:
        folder = root / "images" / identity
        folder.mkdir(parents=True)
        (folder / by_identity[identity][0]).symlink_to(faces_dir / by_identity[identity][0])
        lines.append(f"images/{identity}/{by_identity[identity][0]} {identity}")
    (root / "gallery.txt").write_text("\n".join(lines) + "\n")
    index = tmp_path / "index"

    built = frood("index", "build", "--index", str(index), "--root", str(root), "--index-type", "HNSW32")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["enrolled"] == 3 and summary["size"] == 3

    query = faces_dir / by_identity[chosen[1]][1]
    out_json, out_image = tmp_path / "result.json", tmp_path / "annotated.jpg"
    identified = frood("identify", str(query), "--index", str(index), "--json", "--output-json", str(out_json), "--output-image", str(out_image))
    assert identified.returncode == 0, identified.stderr
    faces = json.loads(identified.stdout)["faces"]
    assert faces[0]["label"] == chosen[1] and faces[0]["matches"][0]["score"] > 0.33
    assert json.loads(out_json.read_text())["faces"][0]["label"] == chosen[1]
    with Image.open(out_image) as drawn:
        assert drawn.size[0] > 100

    info = json.loads(frood("index", "info", "--index", str(index)).stdout)
    assert info["index_type"] == "HNSW32" and info["model_name"] == "faceplugin-r512" and info["count"] == 3
    victim = next(int(i) for i, label in json.loads(built.stdout)["id_map"].items() if label == chosen[1])
    removed = frood("index", "remove", "--index", str(index), "--ids", str(victim))
    assert removed.returncode == 0 and json.loads(removed.stdout)["size"] == 2
    again = json.loads(frood("identify", str(query), "--index", str(index), "--json").stdout)["faces"]
    assert again[0]["label"] == "unknown"
