"""Every file of the bundled sample's static copy (each feed in every format, each archive page, the
previews, the index and the OPML) against a recorded manifest of its bytes and its Last-Modified.

Readers and pollers see a change of bytes as a change of content, so a refactoring must leave
them alone, on SQLite and PostgreSQL alike. The clock is frozen, so the hot lists and every
time in the files are the same on every run. When a change is meant to alter what is served,
record the new manifest with ``FEEDS_UPDATE_GOLDEN=1 pytest tests/test_sample_bytes.py`` and
let the diff of ``tests/golden/sample.json`` show which files moved.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from freezegun import freeze_time

from feeds import create_app
from feeds.ingest import load_sample

from .conftest import Runner, make_settings

MANIFEST = Path(__file__).parent / "golden" / "sample.json"
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)  # 12:00 in Beijing


def built_files(database_url: str, outdir: Path) -> dict[str, dict[str, object]]:
    with freeze_time(NOW):
        app = create_app(make_settings(database_url))
        try:
            services = app.extensions["feeds"]
            load_sample(services.store, services.settings, now=NOW)
            result = Runner(app).invoke("build", str(outdir))
            assert result.exit_code == 0, result.output
            paths = sorted(p.relative_to(outdir).as_posix() for p in outdir.rglob("*") if p.is_file() and p.suffix != ".gz")
            client = app.test_client()
            files = {}
            for path in paths:
                response = client.get("/" if path == "index.html" else f"/{path}")
                files[path] = {
                    "status": response.status_code,
                    "type": response.content_type,
                    # a static file's Last-Modified is its time on this disk, not the content's
                    "modified": None if path.startswith("static/") else response.headers.get("Last-Modified"),
                    "sha256": hashlib.sha256(response.get_data()).hexdigest(),
                }
                assert response.get_data() == (outdir / path).read_bytes(), path
        finally:
            app.extensions["feeds"].store.close()
    return files


def test_sample_files_keep_their_bytes(database_url: str, tmp_path: Path) -> None:
    files = built_files(database_url, tmp_path / "site")
    if os.environ.get("FEEDS_UPDATE_GOLDEN") and database_url.startswith("sqlite"):
        MANIFEST.parent.mkdir(exist_ok=True)
        MANIFEST.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert len(files) > 200  # every feed, format, archive page and preview of the sample
    assert sorted(files) == sorted(recorded), "files appeared or went"
    changed = [path for path in files if files[path] != recorded[path]]
    assert not changed, f"{len(changed)} files changed, e.g. {changed[:10]}"
