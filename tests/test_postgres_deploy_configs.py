"""The deployment files for several replicas are valid: haproxy accepts its config; the supervisord group parses."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.apphelpers import ROOT


def test_haproxy_config_is_valid_and_checks_every_replica_on_health():
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    config = ROOT / "deploy" / "haproxy.cfg"
    checked = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = config.read_text()
    assert "option httpchk GET /health" in text and text.count("server replica") == 4


def test_the_commented_supervisord_replica_group_parses_into_four_ports(tmp_path):
    """Uncommented, the numprocs example gives four processes on 7861-7864 with their own log dirs."""
    from supervisor.options import ServerOptions

    text = (ROOT / "supervisord.conf").read_text()
    base, example = text.split(";[program:frood-replica]", 1)
    group = "[program:frood-replica]" + "\n".join(line[1:] if line.startswith(";") else line for line in example.splitlines())
    (tmp_path / "logs").mkdir()  # %(here)s is the config file's folder
    (tmp_path / "run").mkdir()
    config = tmp_path / "supervisord.conf"
    config.write_text(base + "\n" + group + "\n")
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    replicas = next(group for group in options.process_group_configs if group.name == "frood-replica").process_configs
    assert [process.environment["PORT"] for process in replicas] == ["7861", "7862", "7863", "7864"]
    assert len({process.environment["LOG_DIR"] for process in replicas}) == 4
    assert all(process.environment["DATABASE_URL"].startswith("postgresql://") for process in replicas)
