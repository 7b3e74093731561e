"""A gallery save is one atomic step: SIGKILLed savers, failed saves and leftovers never lose or double an enrolment."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from storage.gallery_faiss import INDEX_FILE, INFO_FILE, LOCK_FILE, POINTER_FILE, TEMP_PREFIX, VECTORS_FILE, GalleryIndex, current_version_dir
from tests.apphelpers import ROOT

DIM = 16

# A writer that adds one labelled vector at a time and saves after each, printing the label once the save returned
# (the acknowledgement); the test SIGKILLs it at random moments.
WRITER = """
import sys
import numpy as np
from pathlib import Path
from storage.gallery_faiss import GalleryIndex
directory, start = Path(sys.argv[1]), int(sys.argv[2])
gallery = GalleryIndex.load(directory) if (directory / "CURRENT").exists() else GalleryIndex.create(16, "model-a", sys.argv[3])
rng = np.random.default_rng(start)
n = start
print("ready", flush=True)
while True:
    vector = rng.normal(size=16).astype("float32")
    gallery.add(vector / np.linalg.norm(vector), [f"p{n}"])
    if n % 3 == 2:
        gallery.remove([min(gallery.labels)])
    gallery.save(directory)
    print(f"p{n}", flush=True)
    n += 1
"""


def expected_labels(acked: list[str]) -> list[str]:
    """Replay the writer's rule (every third add also removes the oldest id) over the acknowledged labels."""
    alive: list[str] = []
    for label in acked:
        alive.append(label)
        if int(label[1:]) % 3 == 2:
            alive.pop(0)
    return alive


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_sigkill_during_saves_never_loses_an_acknowledged_save(tmp_path, index_type):
    rng = random.Random(11)
    directory = tmp_path / "gallery"
    acked: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(len(acked)), index_type],
                                  stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))  # it saves every few milliseconds: the kill lands anywhere in a save
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=30)
        acked += out.split()
        if not acked and not (directory / POINTER_FILE).exists():
            continue  # killed before its first save finished: nothing was acknowledged, nothing to find
        # The write after the last acknowledged one may or may not have become current: either is complete.
        gallery = GalleryIndex.load(directory, expected_model="model-a", expected_dim=DIM)
        labels = sorted(gallery.labels.values(), key=lambda label: int(label[1:]))
        complete = expected_labels(acked)
        one_more = expected_labels([*acked, f"p{len(acked)}"])
        assert labels in (complete, one_more), (labels[-5:], complete[-5:])
        if labels == one_more:
            acked.append(f"p{len(acked)}")  # it was saved, only its acknowledgement was lost
        names = sorted(path.name for path in directory.iterdir())
        assert names == sorted([LOCK_FILE, POINTER_FILE, current_version_dir(directory).name]), names  # load left no leftovers
    assert len(acked) > 12  # the writers got saves done between the kills


def test_leftovers_of_an_interrupted_save_are_removed_and_the_old_version_served(tmp_path, monkeypatch):
    gallery = GalleryIndex.create(DIM, "model-a")
    gallery.add(np.eye(DIM, dtype=np.float32)[:2], ["a", "b"])
    gallery.save(tmp_path / "g")
    gallery.add(np.eye(DIM, dtype=np.float32)[2:3], ["c"])
    real_replace = os.replace

    def crash_before_the_pointer(source, target):
        if Path(target).name == POINTER_FILE:
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_before_the_pointer)
    with pytest.raises(OSError):
        gallery.save(tmp_path / "g")
    monkeypatch.setattr(os, "replace", real_replace)
    (tmp_path / "g" / f"{TEMP_PREFIX}v00000009-deadbeef").mkdir()  # as a SIGKILL during a save would leave it
    (tmp_path / "g" / f"{TEMP_PREFIX}v00000009-deadbeef" / INDEX_FILE).write_bytes(b"half")
    loaded = GalleryIndex.load(tmp_path / "g")
    assert sorted(loaded.labels.values()) == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == sorted([LOCK_FILE, POINTER_FILE, current_version_dir(tmp_path / "g").name])


def test_a_gallery_in_the_older_flat_layout_loads_and_is_upgraded_by_its_next_save(tmp_path):
    gallery = GalleryIndex.create(DIM, "model-a")
    gallery.add(np.eye(DIM, dtype=np.float32)[:3], ["a", "b", "c"])
    gallery.save(tmp_path / "g")
    version = current_version_dir(tmp_path / "g")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in (INDEX_FILE, VECTORS_FILE, INFO_FILE):
        (version / name).rename(flat / name)
    (flat / ".vector.index.0123.tmp").write_bytes(b"leaked by the old three-rename save")
    loaded = GalleryIndex.load(flat)
    assert sorted(loaded.labels.values()) == ["a", "b", "c"] and not (flat / ".vector.index.0123.tmp").exists()
    loaded.remove([0])
    loaded.save(flat)
    assert sorted(p.name for p in flat.iterdir()) == sorted([LOCK_FILE, POINTER_FILE, current_version_dir(flat).name])
    assert sorted(GalleryIndex.load(flat).labels.values()) == ["b", "c"]


def test_a_failed_save_does_not_keep_serving_the_unsaved_change(tmp_path, monkeypatch, pipeline):
    from errors import ApiError
    from service import faces as service
    from service.gallery import IndexRegistry
    from settings import get_settings

    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    monkeypatch.setattr(service, "get_pipeline", lambda model=None: pipeline)
    registry = IndexRegistry()
    gallery = GalleryIndex.create(pipeline.embedder.dim, pipeline.model)
    vectors = np.eye(pipeline.embedder.dim, dtype=np.float32)
    gallery.add(vectors[:1], ["a"])
    key = registry.create(gallery)
    registry.get(key).add(vectors[1:2], ["b"])

    def disk_full(self, directory):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(GalleryIndex, "save", disk_full)
    with pytest.raises(ApiError) as failure:
        registry.save(key)
    assert failure.value.status == 503
    monkeypatch.undo()
    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    monkeypatch.setattr(service, "get_pipeline", lambda model=None: pipeline)
    assert sorted(registry.get(key).labels.values()) == ["a"]  # what is on disk, not the change that was never saved
