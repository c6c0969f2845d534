#!/usr/bin/env python
"""Export a LeRobot ACT checkpoint to a sarm policy bundle (bundle.toml + ONNX, fp32 and INT8).

    models/tools/.venv/bin/python models/tools/export_policy.py --help
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_export.bundle import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
