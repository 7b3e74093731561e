"""``frood eval``: dataset loaders, the end-to-end report on the shared photos, and remote mode against the real app.

Why these tests: the evaluation's numbers are only worth publishing if (1) the pairs it builds are the
ones the files describe, reproducibly, (2) its accuracy at the model's threshold is the engine's own
answer, (3) the reports are complete and readable offline, and (4) the remote client sends a server
exactly what a local crop run analyses.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from errors import FroodError
from evaluation.datasets import (
    Dataset,
    Pair,
    generate_pairs,
    load_identities_csv,
    load_identity_folders,
    load_lfw_pairs,
    load_pairs,
    prepare_crop,
)

# --------------------------------------------------------------------------- dataset loaders (no models)


def touch(path: Path) -> Path:
    """Loaders only check that images exist; the run reads them later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_pairs_csv_resolves_images_next_to_the_csv(tmp_path: Path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        touch(tmp_path / "imgs" / name)
    pairs_file = tmp_path / "imgs" / "pairs.csv"
    pairs_file.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Yes\na.jpg,c.jpg,No\nb.jpg,c.jpg,no\n", encoding="utf-8")
    dataset = load_pairs(pairs_file)
    assert [(p.a.name, p.b.name, p.genuine) for p in dataset.pairs] == [("a.jpg", "b.jpg", True), ("a.jpg", "c.jpg", False), ("b.jpg", "c.jpg", False)]
    assert dataset.pairs[0].a == tmp_path / "imgs" / "a.jpg"
    assert dataset.images == [tmp_path / "imgs" / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert (dataset.n_genuine, dataset.n_impostor) == (1, 2)


def test_pairs_csv_errors_name_the_problem(tmp_path: Path):
    touch(tmp_path / "a.jpg")
    missing = tmp_path / "missing.csv"
    missing.write_text("file_x,file_y,Decision\na.jpg,nope.jpg,Yes\na.jpg,a.jpg,No\n", encoding="utf-8")
    with pytest.raises(FroodError, match="nope.jpg"):
        load_pairs(missing)
    bad = tmp_path / "bad.csv"
    bad.write_text("file_x,file_y,Decision\na.jpg,a.jpg,Maybe\n", encoding="utf-8")
    with pytest.raises(FroodError, match="Maybe"):
        load_pairs(bad)
    one_class = tmp_path / "one.csv"
    one_class.write_text("file_x,file_y,Decision\na.jpg,a.jpg,Yes\n", encoding="utf-8")
    with pytest.raises(FroodError, match="impostor"):
        load_pairs(one_class)


def test_lfw_pairs_txt(tmp_path: Path):
    root = tmp_path / "lfw"
    for name, number in (("Ann_Lee", 1), ("Ann_Lee", 3), ("Bob_Ray", 12)):
        touch(root / name / f"{name}_{number:04d}.jpg")
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\t2\nAnn_Lee\t1\t3\nAnn_Lee\t1\tBob_Ray\t12\n", encoding="utf-8")
    dataset = load_pairs(pairs_file, data_root=root)  # told apart from the CSV format by its first line
    assert dataset.pairs == [
        Pair(root / "Ann_Lee" / "Ann_Lee_0001.jpg", root / "Ann_Lee" / "Ann_Lee_0003.jpg", True),
        Pair(root / "Ann_Lee" / "Ann_Lee_0001.jpg", root / "Bob_Ray" / "Bob_Ray_0012.jpg", False),
    ]
    pairs_file.write_text("1\t2\nAnn_Lee\t1\n", encoding="utf-8")
    with pytest.raises(FroodError, match="name i j"):
        load_lfw_pairs(pairs_file, root)


def make_folders(root: Path, identities: int = 3, per_identity: int = 3) -> None:
    for person in range(identities):
        for index in range(per_identity):
            touch(root / f"person{person}" / f"{index}.jpg")


def test_identity_folders_all_genuine_pairs_and_seeded_impostors(tmp_path: Path):
    make_folders(tmp_path)
    first = load_identity_folders(tmp_path, seed=7, impostor_ratio=1.0)
    again = load_identity_folders(tmp_path, seed=7, impostor_ratio=1.0)
    other = load_identity_folders(tmp_path, seed=8, impostor_ratio=1.0)
    assert first.pairs == again.pairs  # same seed, same pairs
    genuine = [p for p in first.pairs if p.genuine]
    impostor = [p for p in first.pairs if not p.genuine]
    assert len(genuine) == 9  # 3 identities × C(3, 2)
    assert all(p.a.parent == p.b.parent for p in genuine)
    assert len(impostor) == 9 and all(p.a.parent != p.b.parent for p in impostor)
    assert len(set(impostor)) == 9
    assert [p for p in other.pairs if not p.genuine] != impostor  # 9 of 27 impostor pairs: another seed, another draw
    default = load_identity_folders(tmp_path, seed=0)  # 3× genuine = 27 = every impostor pair
    assert default.n_impostor == 27


def test_generated_pairs_sampling_large_sets_is_seeded_and_valid():
    identity_of = {Path(f"/x/p{i // 2}/{i}.jpg"): f"p{i // 2}" for i in range(400)}  # 200 people × 2 images
    pairs = generate_pairs(identity_of, seed=3)
    assert pairs == generate_pairs(dict(reversed(list(identity_of.items()))), seed=3)  # input order does not matter
    impostor = [p for p in pairs if not p.genuine]
    assert sum(p.genuine for p in pairs) == 200 and len(impostor) == 600 == len(set(impostor))
    assert all(identity_of[p.a] != identity_of[p.b] for p in impostor)


def test_identities_csv_flat_folder(tmp_path: Path):
    rows = [("a1.jpg", "ann"), ("a2.jpg", "ann"), ("b1.jpg", "bob"), ("b2.jpg", "bob")]
    for file, _ in rows:
        touch(tmp_path / file)
    (tmp_path / "identities.csv").write_text("file,identity\n" + "".join(f"{f},{i}\n" for f, i in rows), encoding="utf-8")
    from_dir = load_identities_csv(tmp_path, seed=1)
    from_csv = load_identities_csv(tmp_path / "identities.csv", seed=1)
    assert from_dir.pairs == from_csv.pairs
    assert from_dir.n_genuine == 2 and from_dir.n_impostor == 4  # 3× would be 6, but only 4 exist
    assert from_dir.describe()["identities"] == 2


def test_prepare_crop_expands_bounds_and_is_lossless():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(800, 1000, 3), dtype=np.uint8)
    png = prepare_crop(rgb, [100, 100, 500, 600])  # 400×500 box → 480×600 expanded → longest side 256
    crop = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert crop.shape == (256, 205, 3)
    small = prepare_crop(rgb, [100, 100, 150, 160], max_side=256)  # 50×60 → 60×72, no resize: exact pixels
    exact = cv2.cvtColor(cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(exact, rgb[94:166, 95:155])
    edge = prepare_crop(rgb, [0, 0, 100, 100])  # clipped at the image border
    assert cv2.imdecode(np.frombuffer(edge, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (110, 110)


# --------------------------------------------------------------------------- end to end on the shared photos


def eval_parser() -> argparse.ArgumentParser:
    """``frood``'s global options plus the eval sub-command, as cli/frood.py wires it."""
    from cli.evaluate import add_eval_parser

    parser = argparse.ArgumentParser(prog="frood")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def no_nan(constant: str) -> None:
    raise AssertionError(f"report.json holds {constant}; JSON has no NaN (write null)")


@pytest.mark.shared_data
def test_eval_on_master_pairs_writes_complete_reports(faces_dir: Path, pipeline, clean_results, tmp_path: Path):
    out = tmp_path / "report"
    args = eval_parser().parse_args(["eval", "--pairs", str(faces_dir / "master.csv"), "--out", str(out), "--ood-limit", "3", "--seed", "0"])
    started = time.perf_counter()
    assert args.func(args) == 0
    elapsed = time.perf_counter() - started

    report = json.loads((out / "report.json").read_text(encoding="utf-8"), parse_constant=no_nan)
    assert report["config"]["seed"] == 0 and report["config"]["date"] and report["config"]["models"] == ["faceplugin-r512"]
    assert report["config"]["dataset"]["pairs"] == 300
    section = report["models"][0]
    verification = section["verification"]

    # The engine's own answer on master.csv, computed independently from the session's features.
    with open(faces_dir / "master.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    similarity = [float(clean_results[r["file_x"]].face.feature @ clean_results[r["file_y"]].face.feature) for r in rows]
    expected = np.mean([(s >= pipeline.match_threshold) == (r["Decision"] == "Yes") for s, r in zip(similarity, rows)])
    assert verification["match_threshold"] == pytest.approx(pipeline.match_threshold)
    assert verification["accuracy_at_match_threshold"] == pytest.approx(expected) == 1.0

    assert verification["genuine_pairs"] == 38 and verification["impostor_pairs"] == 262
    tars = {entry["far"]: entry for entry in verification["tar_at_far"]}
    assert tars[1e-2]["tar"] is not None and tars[1e-3]["tar"] is None and tars[1e-4]["threshold"] is None  # 262 impostors
    assert 0.99 <= verification["roc_auc"] <= 1.0 and verification["eer"] <= 0.01
    assert verification["kfold_accuracy"]["folds"] == 10 and len(verification["bootstrap_ci95"]["kfold_accuracy"]) == 2
    for name in ("roc_auc", "eer"):
        low, high = verification["bootstrap_ci95"][name]
        assert low <= high
    assert sum(verification["histogram"]["genuine"]) == 38 and sum(verification["histogram"]["impostor"]) == 262

    quality = section["quality"]
    assert set(quality["curves"]) == {"quality", "det_score", "face_px", "sharpness", "feature_norm"}
    assert quality["winners"] and set(quality["winners"]) <= set(quality["curves"])
    ood = section["ood"]
    assert len(ood["images"]) == 3 and ood["in_distribution"]["n"] == 3
    assert set(ood["corruptions"]) >= {"blur_strong", "random_noise", "background_corner"}
    assert ood["corruptions"]["random_noise"]["auroc"] == 1.0  # pure noise never outscores a real face
    # Speed: every image timed once, its time a share of the feature pass (not more than the pass, nor the run).
    speed = section["speed"]
    images = len({r[key] for r in rows for key in ("file_x", "file_y")})
    assert speed["images"] == speed["timed_images"] == images
    assert speed["ms_per_image"] * speed["images_per_second"] == pytest.approx(1000.0)
    timed_total = speed["ms_per_image"] * images / 1000
    assert 0.5 * speed["wall_seconds"] <= timed_total <= speed["wall_seconds"] + 1e-3, (timed_total, speed["wall_seconds"])
    assert speed["wall_seconds"] < elapsed

    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page), "report.html must not load scripts from anywhere (no CDN, no internet)"
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js is inlined
    pngs = report["files"]["png"]
    assert {"roc.png", "hist-faceplugin-r512.png", "edc-faceplugin-r512.png", "ood-faceplugin-r512.png"} <= set(pngs)
    for name in pngs:
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100 and image.std() > 5, f"{name} is empty or unreadable"
    with open(out / "scores-faceplugin-r512.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 300


def test_eval_cli_refuses_inconsistent_options(tmp_path: Path):
    parser = eval_parser()
    args = parser.parse_args(["eval", "--pairs", str(tmp_path / "x.csv"), "--server-url", "http://127.0.0.1:1/extract"])
    with pytest.raises(FroodError, match="--model-name"):
        args.func(args)
    with pytest.raises(SystemExit):  # exactly one dataset source
        parser.parse_args(["eval", "--pairs", "a.csv", "--folders", "b"])


# --------------------------------------------------------------------------- remote mode against the real app


@pytest.mark.shared_data
def test_remote_mode_matches_local_crop_mode(faces_dir: Path, pipeline, tmp_path: Path):
    from evaluation.run import LocalExtractor, RemoteExtractor, crop_for, evaluate_extractor
    from tests.apphelpers import RunningApp

    files = ["img1.jpg", "img2.jpg", "img20.jpg", "img21.jpg"]  # two people, two photos each
    app = RunningApp(tmp_path / "app").start()
    try:
        remote = RemoteExtractor(f"{app.base_url}/extract", "default", pipeline, match_threshold=pipeline.match_threshold)
        for file in files:
            png, _ = crop_for(pipeline, faces_dir / file)
            answer = remote.post(png, file)
            local = pipeline.analyze(png).face
            remote_feature = np.asarray(answer["feature"], np.float32)
            cosine = float(remote_feature @ local.feature / np.linalg.norm(remote_feature))
            assert cosine >= 0.999, f"{file}: remote and local features differ (cosine {cosine:.5f})"
            assert answer["quality_score"] == pytest.approx(local.quality, abs=1e-3)

        paths = [faces_dir / file for file in files]
        dataset = Dataset(
            "tiny", "test", [Pair(paths[0], paths[1], True), Pair(paths[2], paths[3], True), Pair(paths[0], paths[2], False), Pair(paths[1], paths[3], False)]
        )
        remote_section = evaluate_extractor(remote, dataset, n_boot=20, progress=False)
        local_section = evaluate_extractor(LocalExtractor(pipeline, crops=True), dataset, n_boot=20, ood=False, progress=False)
        assert np.allclose(remote_section["_scores"], local_section["_scores"], atol=1e-3)
        assert "local mode only" in remote_section["ood"]["skipped"]
        assert "feature_norm" in remote_section["quality"]["skipped"]  # the API does not send it
        assert remote_section["verification"]["accuracy_at_match_threshold"] == 1.0

        bad_model = RemoteExtractor(f"{app.base_url}/extract", "no-such-model", pipeline)
        with pytest.raises(FroodError, match="400"):
            bad_model.post(png, "x.png")
    finally:
        app.stop()


@pytest.mark.shared_data
@pytest.mark.parametrize("crops", [False, True], ids=["full-image", "prepared-crops"])
def test_batched_eval_extraction_equals_image_by_image(faces_dir: Path, pipeline, tmp_path: Path, crops: bool):
    """``frood eval`` feeds the batched engine: the same features, measures and per-image errors as one by one."""
    from evaluation.run import LocalExtractor

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 40, np.uint8))
    paths = [faces_dir / "img1.jpg", broken, faces_dir / "couple.jpg", blank, faces_dir / "img20.jpg"]
    extractor = LocalExtractor(pipeline, crops=crops)
    started = time.perf_counter()
    chunks = list(extractor.extract_stream(paths, batch_size=3))
    elapsed = time.perf_counter() - started
    batched = [result for chunk in chunks for result in chunk]
    assert [result.path for result in batched] == paths
    # Each image's seconds is an equal share of its batch's time: the shares add up to (at most) the whole pass.
    assert [len(chunk) for chunk in chunks] == [3, 2]
    assert all(len({result.seconds for result in chunk}) == 1 for chunk in chunks)
    assert 0.5 * elapsed <= sum(result.seconds for result in batched) <= elapsed
    for one, many in zip((extractor.extract(path) for path in paths), batched):
        assert (one.feature is None) == (many.feature is None), one.path
        assert one.error == many.error, one.path
        if one.feature is not None:
            assert float(one.feature @ many.feature) >= 0.9999, one.path
            assert many.values["quality"] == pytest.approx(one.values["quality"], abs=1e-4)
            assert many.bbox == pytest.approx(one.bbox, abs=0.01)
    assert batched[1].error and "decode" in batched[1].error.lower() and batched[3].error == "no face found"
