#!/usr/bin/env python
"""Export a LeRobot SARM checkpoint to a sarm runtime bundle (bundle.toml + ONNX).

    models/tools/.venv/bin/python models/tools/export_bundle.py --help
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sarm_export.bundle import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
