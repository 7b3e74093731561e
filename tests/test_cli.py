"""The `frood` command as a user types it: models, extract, compare, embed (one line per input, failures too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frood(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.frood", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_models_lists_name_dimension_and_weights_source():
    result = frood("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["faceplugin-r512"]["feature_dim"] == 512 and rows["faceplugin-r512"]["default"]
    assert rows["faceplugin-r512"]["weights_present"]
    assert {"facenet-vggface2", "arcface-onnx"} <= set(rows)


def test_extract_json_has_the_documented_fields(faces_dir):
    result = frood("extract", str(faces_dir / "img1.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in ("feature", "quality_score", "resolution", "detected_face_area_ratio", "bbox", "faces_found", "reasons", "model"):
        assert key in payload
    assert len(payload["feature"]) == 512 and payload["resolution"] == "112x112"
    assert payload["faces_found"] == 1 and 0 < payload["detected_face_area_ratio"] < 1
    assert payload["model"] == "faceplugin-r512"


def test_compare_json_gives_similarity_and_decision(faces_dir):
    result = frood("compare", str(faces_dir / "img1.jpg"), str(faces_dir / "img2.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["decision"] == "match" and payload["similarity"] > payload["match_threshold"]
    assert payload["message"]["en"] and payload["message"]["zh"]


def test_unknown_model_is_a_clear_error_not_a_traceback(faces_dir):
    result = frood("--model", "no-such-model", "extract", str(faces_dir / "img1.jpg"))
    assert result.returncode == 2
    assert "unknown model" in result.stderr and "Traceback" not in result.stderr


def test_model_without_weights_names_where_to_put_them(faces_dir, tmp_path):
    result = frood("--model", "arcface-onnx", "extract", str(faces_dir / "img1.jpg"))
    assert result.returncode == 2
    assert "ARCFACE_ONNX_PATH" in result.stderr and "Traceback" not in result.stderr


def test_embed_writes_one_line_per_input_including_failures(faces_dir, tmp_path):
    bad_text = tmp_path / "notes.jpg"
    bad_text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    photos = sorted(faces_dir.glob("*.jpg"))
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join([*map(str, photos), str(bad_text), str(empty), str(tmp_path / "missing.jpg")]) + "\n")
    output = tmp_path / "out.jsonl"
    result = frood("embed", "--input", str(listing), "--output", str(output))
    assert result.returncode == 4, result.stderr  # some inputs failed: documented exit code, after writing every line
    assert "(3 failed)" in result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == len(photos) + 3
    by_path = {line["path"]: line for line in lines}
    assert by_path[str(bad_text)]["error"] and by_path[str(empty)]["error"] and by_path[str(tmp_path / "missing.jpg")]["error"]
    good = [line for line in lines if line["error"] is None]
    assert len(good) >= len(photos) - 1
    face = good[0]["faces"][0]
    assert set(face) == {"bbox", "det_score", "quality_score", "reasons", "feature"} and len(face["feature"]) == 512


def test_embed_over_the_shared_folder(faces_dir, tmp_path):
    output = tmp_path / "faces.jsonl"
    result = frood("embed", "--input", str(faces_dir), "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert len(lines) == len(list(faces_dir.glob("*.jpg")))
    assert not list(tmp_path.glob("*.part"))


def test_help_documents_the_exit_codes():
    result = frood("--help")
    assert result.returncode == 0
    for line in ("0  done", "1  an unexpected failure", "2  a usage or input error", "3  extract: no face found", "4  embed:"):
        assert line in result.stdout


def test_gallery_commands_explain_instead_of_crashing(faces_dir, tmp_path):
    """Issue 22: missing galleries, bad or unknown ids, a build over an existing gallery: `error: ...`, exit 2, no traceback."""
    missing = tmp_path / "no-such-index"
    for args in (("index", "info", "--index", str(missing)), ("identify", str(faces_dir / "img1.jpg"), "--index", str(missing)),
                 ("index", "remove", "--index", str(missing), "--ids", "abc")):
        result = frood(*args)
        assert result.returncode == 2, (args, result.stderr[-500:])
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    root = tmp_path / "people"
    (root / "images" / "alice").mkdir(parents=True)
    (root / "images" / "alice" / "img1.jpg").write_bytes((faces_dir / "img1.jpg").read_bytes())
    index = tmp_path / "index"
    assert frood("index", "build", "--index", str(index), "--root", str(root)).returncode == 0
    unknown = frood("index", "remove", "--index", str(index), "--ids", "99")
    assert unknown.returncode == 2 and "ids not in the gallery" in unknown.stderr and "Traceback" not in unknown.stderr
    again = frood("index", "build", "--index", str(index), "--root", str(root))
    assert again.returncode == 2 and "--force" in again.stderr  # never silently replaced
    assert json.loads(frood("index", "info", "--index", str(index)).stdout)["count"] == 1
    blank_root = tmp_path / "blank"
    (blank_root / "images" / "bob").mkdir(parents=True)
    (blank_root / "images" / "bob" / "blank.png").write_bytes(_blank_png())
    empty = frood("index", "build", "--index", str(tmp_path / "empty-index"), "--root", str(blank_root))
    assert empty.returncode == 2 and "no image could be enrolled" in empty.stderr and "no face" in empty.stderr
    assert not (tmp_path / "empty-index").exists()  # nothing created


def _blank_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_extract_without_a_face_exits_3_with_json_too(tmp_path):
    blank = tmp_path / "blank.png"
    blank.write_bytes(_blank_png())
    plain, as_json = frood("extract", str(blank)), frood("extract", str(blank), "--json")
    assert plain.returncode == 3 and as_json.returncode == 3, (plain.stderr[-300:], as_json.stderr[-300:])
    assert json.loads(as_json.stdout)["faces_found"] == 0


def test_embed_over_an_empty_folder_is_an_error_not_a_success(tmp_path):
    (tmp_path / "empty").mkdir()
    result = frood("embed", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2 and "holds no images" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
