"""``python -m tests.robustness.tiny_emo ARGS``: the real ``emo`` entry point with ``tiny_test``
registered, for tests that need a separate process (signals, SIGPIPE, dropped privileges).
The weights file is the one the parent test's ``tiny_backbone`` fixture wrote to $EMO_WEIGHTS_DIR.
"""

import hashlib
import os
from pathlib import Path

from emo.cli import main
from emo.models.registry import register
from tests.conftest import tiny_entry

weights = Path(os.environ["EMO_WEIGHTS_DIR"]) / "tiny_test.pth"
register(tiny_entry(hashlib.sha256(weights.read_bytes()).hexdigest()))
main()
