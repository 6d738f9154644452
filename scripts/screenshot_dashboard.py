"""Refresh ``docs/dashboard.png``: run the dashboard's end-to-end test and keep its picture.

The test drives the real pipeline (simulator → broker → ingestor → database → scorer → API) in
headless Chromium and saves screenshots under ``test-artifacts/``; the sensor view with the
injected anomaly, its alert and the forecast band is the one the README shows.

    .venv/bin/python scripts/screenshot_dashboard.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "test-artifacts" / "dashboard-sensor.png"
TARGET = REPO / "docs" / "dashboard.png"


def main() -> int:
    SOURCE.unlink(missing_ok=True)
    test = "tests/e2e/test_dashboard.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0 or not SOURCE.exists():
        print(
            f"the dashboard test failed (exit {done.returncode}); docs/dashboard.png unchanged",
            file=sys.stderr,
        )
        return 1
    shutil.copyfile(SOURCE, TARGET)
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
