#!/usr/bin/env python
"""Add an INT8 image encoder to a bundle (quantized on real frames); see sarm_export/encoder_int8.py.

    models/tools/.venv/bin/python models/tools/add_int8_encoder.py --bundle models/NAME --calibration EPISODE...
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sarm_export.encoder_int8 import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
