#!/usr/bin/env python3
"""Regenerates the client's pydantic models from a running muon's OpenAPI document.

    python scripts/generate.py URL            # writes openapi.json and src/muon/models.py
    python scripts/generate.py URL --check    # exits 1 when either differs from what is committed

URL is the server's base address (for example http://127.0.0.1:8080). The
document is fetched from URL/v1/openapi.json (no key needed), saved as
openapi.json next to this package, and turned into pydantic v2 models by
datamodel-code-generator with the options below. The options are fixed here,
not left to a user's configuration, so two runs on the same document give the
same file byte for byte; tests/test_generated.py relies on that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.json"
MODELS = ROOT / "src" / "muon" / "models.py"

OPTIONS = [
    "--input-file-type", "openapi",
    "--output-model-type", "pydantic_v2.BaseModel",
    "--target-python-version", "3.10",
    "--use-standard-collections",
    "--use-union-operator",
    "--field-constraints",
    "--use-schema-description",
    "--use-double-quotes",
    "--disable-timestamp",
    "--formatters", "black", "isort",
]


def fetch_document(url: str) -> str:
    """The server's OpenAPI document, pretty-printed with sorted keys so diffs read well."""
    with urllib.request.urlopen(url.rstrip("/") + "/v1/openapi.json", timeout=30) as response:
        document = json.load(response)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def generate_models(document: str) -> str:
    """Runs datamodel-codegen on the document and returns the module's text."""
    with tempfile.TemporaryDirectory() as tmp:
        # The generator writes the input's file name into the header: keep it stable.
        source = Path(tmp) / "openapi.json"
        source.write_text(document)
        output = Path(tmp) / "models.py"
        subprocess.run(
            [sys.executable, "-m", "datamodel_code_generator", "--input", str(source),
             "--output", str(output), *OPTIONS],
            check=True,
            cwd=tmp,
        )
        return output.read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the muon server's base URL")
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args()

    document = fetch_document(args.url)
    models = generate_models(document)
    if args.check:
        stale = [p.name for p, text in ((DOCUMENT, document), (MODELS, models))
                 if not p.exists() or p.read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run scripts/generate.py {args.url}", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(document)
    MODELS.write_text(models)
    print(f"wrote {DOCUMENT.relative_to(ROOT)} and {MODELS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
