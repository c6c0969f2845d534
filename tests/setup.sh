#!/usr/bin/env bash
# Installs what the tests need besides the Rust toolchain: two local Python
# environments (git-ignored), idempotent. Part of the README's test command.
#   models/tools/.venv       LeRobot + PyTorch + onnxruntime (exporter tests; ~3 GB, first time only)
#   ros/tests/interop/.venv  independent ROS 2 implementations (rosbags, mcap-ros2-support)
set -euo pipefail
cd "$(dirname "$0")/.."

venv() {
    local dir=$1 req=$2
    if [ ! -x "$dir/bin/python" ]; then
        echo "== creating $dir"
        python3 -m venv "$dir"
    fi
    echo "== installing $req into $dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
}

venv ros/tests/interop/.venv ros/tests/interop/requirements.txt
if [ "${SARM_SKIP_EXPORTER_ENV:-0}" != 1 ]; then
    venv models/tools/.venv models/tools/requirements.txt
fi
