"""The fault-injection load test (benchmarks/serve_faults.py), bounded, run against a real
``python -m openimagen.serve`` process: hostile requests mixed with valid ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_faults.py"


def test_hostile_requests_get_their_4xx_and_every_valid_request_succeeds(tmp_path):
    out = tmp_path / "faults.json"
    command = [sys.executable, str(SCRIPT), "--rounds", "2", "--valid", "4", "--warmup", "2",
               "--concurrency", "4", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.is_file(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == []
    by_kind = result["by_kind"]
    assert by_kind.pop("valid") == {"sent": 8, "as_expected": 8}
    assert len(by_kind) >= 18  # every hostile kind, the disconnecting clients included
    for kind, counts in by_kind.items():
        assert counts == {"sent": 2, "as_expected": 2}, kind
    # the server stayed responsive and healthy, and nothing in it failed unexpectedly
    assert result["health_probes"] > 0 and result["health_probe_failures"] == 0
    assert result["healthy_after"] and result["server_tracebacks"] == 0
    assert set(result["disconnected_while_queued_final_state"]) <= {"cancelled", "done", "unknown"}
    assert done.returncode == 0
