"""Where the shared reference datasets are: ``../shared/data`` beside the checkout, or ``$MISSTEP_SHARED_DATA``.

Tests that read them skip when the folder is absent (a fresh clone, CI); the project never needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("MISSTEP_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
