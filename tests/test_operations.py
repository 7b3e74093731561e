"""Operations: webhook events survive a crash of the app; supervisord brings a killed app back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from gradio_client import Client, handle_file
from PIL import Image

from tests.apphelpers import ROOT, RunningApp, WebhookReceiver, free_port, wait_healthy


def test_pending_webhook_events_are_delivered_after_the_app_is_killed_and_restarted(tmp_path, faces_dir):
    hook_port = free_port()  # nothing listens there yet: deliveries fail and stay pending
    data_dir = tmp_path / "app"
    app = RunningApp(data_dir, WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook", WEBHOOK_TIMEOUT_S="1").start()
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(noise)
    try:
        Client(app.base_url + "/", verbose=False).predict(handle_file(str(noise)), False, api_name="/extract")
        deadline = time.time() + 20
        while app.stats()["webhook"]["pending"] < 1 and time.time() < deadline:
            time.sleep(0.2)
        assert app.stats()["webhook"]["pending"] == 1
    finally:
        app.kill()

    server = WebhookReceiver(port=hook_port)
    restarted = RunningApp(data_dir, port=app.port, WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook").start()
    try:
        deadline = time.time() + 60
        while not server.requests and time.time() < deadline:
            time.sleep(0.2)
        assert len(server.requests) == 1, restarted.output()[-2000:]
        assert json.loads(server.requests[0][1])["quality_score"] < 0.5
        assert restarted.stats()["webhook"] == {"sent": 1, "pending": 0, "failed": 0}
    finally:
        restarted.stop()
        server.close()


def supervisor_config(tmp_path: Path) -> Path:
    """The project's supervisord.conf with its run/ and logs/ moved into tmp_path (program unchanged)."""
    text = (ROOT / "supervisord.conf").read_text()
    text = text.replace("%(here)s/run", str(tmp_path / "run")).replace("%(here)s/logs", str(tmp_path / "logs")).replace("%(here)s", str(ROOT))
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    config = tmp_path / "supervisord.conf"
    config.write_text(text)
    return config


def supervisorctl(config: Path, *args: str) -> str:
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "supervisorctl"), "-c", str(config), *args], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def wait_for_status(config: Path, accept, seconds: float) -> str:
    """Poll ``supervisorctl status`` until ``accept(status)`` or the bound runs out; returns the last status.

    ``/health`` can answer while supervisord still says STARTING (it waits ``startsecs``, and polls slowly
    under load), so a test asserts a state only after waiting for it.
    """
    deadline = time.time() + seconds
    status = supervisorctl(config, "status", "face-recognition-ood")
    while not accept(status) and time.time() < deadline:
        time.sleep(0.25)
        status = supervisorctl(config, "status", "face-recognition-ood")
    return status


def test_supervisord_restarts_a_killed_app(tmp_path, faces_dir):
    config = supervisor_config(tmp_path)
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DATA_DIR": str(tmp_path / "data"), "LOG_DIR": str(tmp_path / "logs")}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "supervisord"), "-c", str(config)], env=env, check=True, timeout=60)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, seconds=180)
        status = wait_for_status(config, lambda text: "RUNNING" in text, seconds=60)
        assert "RUNNING" in status, status
        pid = int(status.split("pid")[1].split(",")[0])
        os.kill(pid, signal.SIGKILL)
        status = wait_for_status(config, lambda text: "RUNNING" in text and f"pid {pid}," not in text, seconds=90)
        assert "RUNNING" in status and f"pid {pid}," not in status, status
        wait_healthy(base_url, seconds=120)
        assert requests.get(f"{base_url}/health", timeout=10).status_code == 200
        assert "[INFO] Serving on" in supervisorctl(config, "tail", "face-recognition-ood")
    finally:
        supervisorctl(config, "shutdown")
        pid_file = tmp_path / "run" / "supervisord.pid"
        deadline = time.time() + 30
        while pid_file.exists() and time.time() < deadline:
            time.sleep(0.2)
    if pid_file.exists():
        pytest.fail("supervisord did not shut down")


def test_make_test_checks_system_packages_first_and_names_the_one_command():
    """A fresh machine: `make test` installs the Debian packages or stops at once, before the long run."""
    planned = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.splitlines()
    steps = [line for line in planned if "system-deps.sh" in line or "pytest" in line]
    assert steps and "system-deps.sh ensure" in steps[0] and "pytest" in steps[-1], planned
    script = ROOT / "scripts" / "system-deps.sh"
    listed = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=30).stdout.split()
    assert {"chromium", "fonts-noto-cjk", "postgresql", "npm"} <= set(listed)
    start = time.monotonic()
    missing = subprocess.run([str(script), "check"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "CHROMIUM_BIN": "/nonexistent/chromium"})
    assert missing.returncode == 1 and time.monotonic() - start < 30
    assert "apt-get install -y chromium" in missing.stderr, missing.stderr
