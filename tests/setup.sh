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

# ---- begin: rclpy (ROS 2 Kilted on Fast DDS) for ros/tests/rclpy_interop.rs -----------
# A real ROS 2 stack in the interop venv: rclpy, rmw_fastrtps_cpp, the message
# packages, and sarm_msgs' type support built with rosidl's generators
# (ros/tests/interop/setup_rclpy.sh; ~160 MB more in the venv; cold about
# 1 min of downloads and 1.5-2 min building sarm_msgs, ~10 s when done), and
# strace for the test that traces where `sarm replay` sends.
if [ "${SARM_SKIP_RCLPY_ENV:-0}" != 1 ]; then
    bash ros/tests/interop/setup_rclpy.sh ros/tests/interop/.venv
    if ! command -v strace >/dev/null; then
        echo "== installing strace"
        apt-get update -qq && apt-get install -y -qq strace >/dev/null
    fi
fi
# ---- end: rclpy ----------------------------------------------------------------------------
