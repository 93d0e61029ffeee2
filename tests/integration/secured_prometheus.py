"""A real Prometheus (Debian's `prometheus` package) behind TLS and basic auth, started with its own
`--web.config.file`, for proving the operator's Prometheus credentials and TLS settings against the
server managed and self-hosted setups actually run (exporter-toolkit's web config).

Why a fixture of its own: tests/integration/live_metrics.py starts a plain-HTTP Prometheus that
scrapes stand-in replicas; these tests need no scrapes, only a server that refuses a wrong password
with 401 and presents a certificate signed by a CA made for the test (tests/tls_certificates.py).

Basic auth in a web config takes bcrypt hashes. Neither the `bcrypt` package nor `htpasswd` is on
the test machines, so the hash of the fixed test password is a constant, made once with
`crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024))` (cost 10, to keep each
request's check cheap); the tests that log in with PASSWORD prove it matches.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.processes import free_port
from tests.integration.live_metrics import prometheus_binary
from tests.tls_certificates import SERVER_NAME, ServerCertificates, make_server_certificates

USERNAME = "berth"
PASSWORD = "berth-test-password"
PASSWORD_BCRYPT = "$2b$10$cOc0aT3/F0kQX0twhB9wJei0fHMxXFbKUaUOyd5KKl5NXEo9bUu0S"
READY_TIMEOUT_SECONDS = 30.0


@dataclass
class SecuredPrometheus:
    """A Prometheus on 127.0.0.1 that serves HTTPS only (certificate for `SERVER_NAME`, i.e.
    localhost) and answers only USERNAME with PASSWORD."""

    work_dir: Path
    certificates: ServerCertificates
    port: int
    process: subprocess.Popen[bytes]

    def url(self, host: str = SERVER_NAME, scheme: str = "https") -> str:
        return f"{scheme}://{host}:{self.port}"

    def log(self) -> str:
        return (self.work_dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_secured_prometheus(work_dir: Path) -> SecuredPrometheus:
    """Start it and return once /-/ready answers 200 over TLS with the credentials."""
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("prometheus is not installed (scripts/test.sh installs Debian's package)")
    certificates = make_server_certificates(work_dir / "tls")
    web_config = {
        "tls_server_config": {
            "cert_file": str(certificates.server_cert),
            "key_file": str(certificates.server_key),
        },
        "basic_auth_users": {USERNAME: PASSWORD_BCRYPT},
    }
    (work_dir / "web.yml").write_text(json.dumps(web_config))  # JSON is YAML
    (work_dir / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "15s"}}))
    port = free_port()
    with open(work_dir / "prometheus.log", "ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={work_dir / 'prometheus.yml'}",
                f"--web.config.file={work_dir / 'web.yml'}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = SecuredPrometheus(work_dir, certificates, port, process)
    try:
        _wait_ready(prometheus)
    except BaseException:
        prometheus.stop()
        raise
    return prometheus


def _wait_ready(prometheus: SecuredPrometheus) -> None:
    context = ssl.create_default_context(cafile=str(prometheus.certificates.ca_cert))
    credentials = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"{prometheus.url()}/-/ready", headers={"Authorization": f"Basic {credentials}"}
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {prometheus.process.returncode}:\n{prometheus.log()}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"prometheus was not ready in {READY_TIMEOUT_SECONDS:.0f} s:\n{prometheus.log()}")
