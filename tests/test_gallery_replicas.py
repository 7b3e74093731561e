"""Two app processes with separate DATA_DIRs behind HAProxy share galleries through PostgreSQL and one Milvus server.

Everything is real and started by the test, on loopback: PostgreSQL (``tests/postgres_server.py``), a Milvus Lite
gRPC server (``python -m milvus_lite server``: the same protocol as Milvus standalone), two replicas (``python
app.py``, ``DATABASE_URL`` + ``GALLERY_BACKEND=milvus`` + ``MILVUS_URI``) and HAProxy in front (Debian's
``haproxy``). Every request goes through the load balancer; a request header picks the replica
(``use-server``), and the answer says who served it. The flow: create and enrol through replica 1, list and
identify through replica 2, remove through replica 1, see it gone in replica 2; then rename and delete likewise.
Replica 2 never writes a gallery file, and replica 1's gallery folder is removed mid-test: nothing is read from
``DATA_DIR``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import csv
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.apphelpers import RunningApp, free_port, wait_healthy
from tests.postgres_server import TemporaryPostgres, unavailable_reason

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
pytestmark = [
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (Debian: apt-get install haproxy)"),
]

HAPROXY_CONFIG = """
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    retries 2
    option redispatch
frontend frood
    bind 127.0.0.1:{port}
    http-response set-header X-Served-By %s
    use_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 3 rise 1
    use-server r1 if {{ req.hdr(X-Replica) -m str r1 }}
    use-server r2 if {{ req.hdr(X-Replica) -m str r2 }}
    server r1 127.0.0.1:{port1} check
    server r2 127.0.0.1:{port2} check
"""


def wait_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery-replicas")
    postgres = TemporaryPostgres().start()
    milvus_port = free_port()
    milvus = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(root / "milvus"), "--host", "127.0.0.1", "--port", str(milvus_port)],
        stdout=open(root / "milvus.out", "ab"), stderr=subprocess.STDOUT,
    )
    processes: list = []
    replicas: list[RunningApp] = []
    try:
        wait_port(milvus_port, milvus)
        env = {"DATABASE_URL": postgres.url, "GALLERY_BACKEND": "milvus", "MILVUS_URI": f"http://127.0.0.1:{milvus_port}"}
        replicas = [RunningApp(root / f"replica-{index}", **env) for index in (1, 2)]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both load their models at the same time
            list(pool.map(lambda replica: replica.start(), replicas))
        port = free_port()
        (root / "haproxy.cfg").write_text(HAPROXY_CONFIG.format(port=port, port1=replicas[0].port, port2=replicas[1].port))
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(root / "haproxy.cfg")], stdout=open(root / "haproxy.out", "ab"), stderr=subprocess.STDOUT)
        processes.append(haproxy)
        wait_port(port, haproxy)
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, 60)
        yield base_url, replicas
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        for replica in replicas:
            replica.stop()
        milvus.terminate()
        milvus.wait(timeout=30)
        postgres.stop()


def via(base_url: str, replica: str, method: str, path: str, **kwargs) -> requests.Response:
    """A request through the load balancer to the named replica (r1, r2); asserts who served it."""
    response = requests.request(method, base_url + path, headers={"X-Replica": replica}, timeout=300, **kwargs)
    assert response.headers.get("X-Served-By") == replica, response.headers
    return response


def ok(response: requests.Response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    return response.json()


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    with open(faces_dir / "identities.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault(row["identity"], []).append(row["file"])
    return {identity: [base64.b64encode((faces_dir / name).read_bytes()).decode() for name in sorted(files)] for identity, files in groups.items()}


def test_enrol_through_one_identify_through_the_other_remove_and_see_it_gone(cluster, photos):
    base_url, replicas = cluster
    created = ok(via(base_url, "r1", "POST", "/galleries", json={"name": "lobby"}))
    assert created["backend"] == "milvus"
    jolie = ok(via(base_url, "r1", "POST", "/galleries/lobby/identities/jolie/photos", json={"images": photos["angelina_jolie"][:2], "requestId": "r-1"}))
    katy = ok(via(base_url, "r1", "POST", "/galleries/lobby/identities/katy/photos", json={"images": photos["katy_perry"][:2]}))
    assert len(jolie["added"]) == 2 and len(katy["added"]) == 2 and not set(jolie["added"]) & set(katy["added"])

    # replica 2 sees the gallery, its identities and counts, identifies, and answers the retry from the shared ledger
    listed = {row["name"]: row for row in ok(via(base_url, "r2", "GET", "/galleries"))["galleries"]}
    assert (listed["lobby"]["indexKey"], listed["lobby"]["size"], listed["lobby"]["identities"]) == (created["indexKey"], 4, 2)
    identities = ok(via(base_url, "r2", "GET", "/galleries/lobby/identities"))["identities"]
    assert identities == [{"label": "jolie", "photos": 2, "ids": jolie["added"]}, {"label": "katy", "photos": 2, "ids": katy["added"]}]
    found = ok(via(base_url, "r2", "POST", "/galleries/lobby/identify", json={"image": photos["angelina_jolie"][-1], "topK": 2}))
    assert found["faces"][0]["label"] == "jolie"
    retry = ok(via(base_url, "r2", "POST", "/galleries/lobby/identities/jolie/photos", json={"images": photos["angelina_jolie"][:2], "requestId": "r-1"}))
    assert retry["replayed"] is True and retry["added"] == jolie["added"]
    conflict = via(base_url, "r2", "POST", "/galleries/lobby/identities/jolie/photos", json={"images": photos["angelina_jolie"][2:3], "requestId": "r-1"})
    assert conflict.status_code == 409
    # the PaddleX route finds the key on replica 2 too
    infer = ok(via(base_url, "r2", "POST", "/face-recognition-infer", json={"image": photos["katy_perry"][-1], "indexKey": created["indexKey"], "topK": 1}))
    assert infer["result"]["faces"][0]["recResults"][0]["label"] == "katy"

    # nothing on disk is needed: replica 2 never wrote a gallery folder, and replica 1's goes away now
    assert not (Path(replicas[1].env["DATA_DIR"]) / "indexes").exists() or not any((Path(replicas[1].env["DATA_DIR"]) / "indexes").iterdir())
    shutil.rmtree(Path(replicas[0].env["DATA_DIR"]) / "indexes", ignore_errors=True)

    # remove through replica 1, gone in replica 2
    removed = ok(via(base_url, "r1", "DELETE", "/galleries/lobby/identities/jolie"))
    assert sorted(removed["removed"]) == sorted(jolie["added"])
    assert [row["label"] for row in ok(via(base_url, "r2", "GET", "/galleries/lobby/identities"))["identities"]] == ["katy"]
    after = ok(via(base_url, "r2", "POST", "/galleries/lobby/identify", json={"image": photos["angelina_jolie"][-1], "topK": 5}))
    assert all(match["label"] != "jolie" for face in after["faces"] for match in face["matches"])
    assert via(base_url, "r2", "DELETE", "/galleries/lobby/identities/jolie").status_code == 404

    # one photo, an identity's new label, the gallery's new name, then the gallery itself: each seen by the other
    ok(via(base_url, "r2", "DELETE", f"/galleries/lobby/photos/{katy['added'][0]}"))
    ok(via(base_url, "r1", "PATCH", "/galleries/lobby/identities/katy", json={"newLabel": "Katy Perry"}))
    assert ok(via(base_url, "r2", "GET", "/galleries/lobby/identities"))["identities"] == [{"label": "Katy Perry", "photos": 1, "ids": katy["added"][1:]}]
    ok(via(base_url, "r2", "PATCH", "/galleries/lobby", json={"newName": "entrance"}))
    assert via(base_url, "r1", "POST", "/galleries", json={"name": "entrance"}).status_code == 409
    found = ok(via(base_url, "r1", "POST", "/galleries/entrance/identify", json={"image": photos["katy_perry"][-1]}))
    assert found["faces"][0]["label"] == "Katy Perry"
    ok(via(base_url, "r1", "DELETE", "/galleries/entrance"))
    assert via(base_url, "r2", "GET", "/galleries/entrance/identities").status_code == 404
    assert via(base_url, "r2", "POST", "/face-recognition-infer", json={"image": photos["katy_perry"][-1], "indexKey": created["indexKey"]}).status_code == 404
    assert "entrance" not in {row["name"] for row in ok(via(base_url, "r2", "GET", "/galleries"))["galleries"]}


def test_the_load_balancer_spreads_reads_and_both_replicas_agree(cluster, photos):
    base_url, _ = cluster
    ok(requests.post(f"{base_url}/galleries", json={"name": "spread"}, timeout=300))
    ok(requests.post(f"{base_url}/galleries/spread/identities/matt/photos", json={"images": photos["matt_damon"][:1]}, timeout=300))
    served, answers = set(), []
    for _ in range(6):
        response = requests.get(f"{base_url}/galleries/spread/identities", timeout=60)
        served.add(response.headers.get("X-Served-By"))
        answers.append(ok(response))
    assert served == {"r1", "r2"} and all(answer == answers[0] for answer in answers) and answers[0]["total"] == 1
