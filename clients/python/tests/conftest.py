"""A live muon for the tests: one server per session, on a fresh data directory.

The binary is `MUON_BIN` (default `target/release/muon` under the repository
root), the guest components are in `MUON_GUESTS` (default
`target/wasm32-wasip2/guest`), both built by the repository's own scripts.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import muon

REPO = Path(__file__).resolve().parents[3]


def _path(env: str, default: str) -> Path:
    path = Path(os.environ.get(env, default))
    return path if path.is_absolute() else REPO / path


@dataclass
class Server:
    url: str
    admin_key: str
    guests: Path
    process: subprocess.Popen[str]

    def component(self, name: str) -> Path:
        """The built guest `name` (dashes or underscores)."""
        path = self.guests / f"{name.replace('-', '_')}.wasm"
        if not path.exists():
            pytest.fail(f"{path} is missing: build the guests (scripts/build-functions.sh) or set MUON_GUESTS")
        return path

    def client(self, **kwargs: object) -> muon.Client:
        return muon.Client(self.url, self.admin_key, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = _path("MUON_BIN", "target/release/muon")
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build muon (cargo build --release) or set MUON_BIN")
    data = tmp_path_factory.mktemp("muon-data")
    process = subprocess.Popen(
        # 1-second statistics windows, so that a bad rollout is judged within seconds.
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--monitor-window-ms", "1000"],
        stdout=subprocess.PIPE, stderr=open(data / "stderr.log", "w"), text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        pytest.fail(f"muon did not start: {line!r}; see {data / 'stderr.log'}")
    url = line.split("listening on", 1)[1].strip()
    deadline = time.monotonic() + 10
    while httpx.get(url + "/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    server = Server(url=url, admin_key=(data / "admin.key").read_text().strip(),
                    guests=_path("MUON_GUESTS", "target/wasm32-wasip2/guest"), process=process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture()
def client(server: Server) -> Iterator[muon.Client]:
    with server.client() as client:
        yield client
