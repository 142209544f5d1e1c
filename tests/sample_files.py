"""Where the third-party sample files are (shared/samples, see its README for sources and licences).

The tests read ``../shared/samples`` beside the repository when it is there; a clean clone elsewhere
uses the identical copy kept in ``tests/samples`` (with the README that carries the licence notices).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def samples_dir() -> Path:
    for candidate in (os.environ.get("CLOSELOOP_SAMPLES"), REPO.parent / "shared" / "samples",
                      REPO / "tests" / "samples"):
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    return REPO / "tests" / "samples"


SAMPLES = samples_dir()
