"""The committed models are what scripts/generate.py makes from the live server's document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Server

CLIENT = Path(__file__).resolve().parents[1]


def test_models_match_the_servers_openapi_document(server: Server) -> None:
    result = subprocess.run(
        [sys.executable, str(CLIENT / "scripts" / "generate.py"), server.url, "--check"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, (
        "clients/python/openapi.json or src/muon/models.py differ from the server's /v1/openapi.json; "
        f"regenerate with scripts/generate.py URL\n{result.stderr}"
    )


def test_installed_models_are_the_committed_ones() -> None:
    import muon.models

    assert Path(muon.models.__file__).read_text() == (CLIENT / "src" / "muon" / "models.py").read_text()
