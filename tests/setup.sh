#!/usr/bin/env bash
# Installs what the tests need besides the Rust toolchain, idempotent. Part of the README's
# test command.
#   Debian packages          FFmpeg's libraries and libclang, for `sarm label --dataset`'s
#                            `video` feature, which the test build turns on (tests/Cargo.toml)
#   models/tools/.venv       LeRobot + PyTorch + onnxruntime (exporter tests; ~3 GB, first time only),
#                            and the MuJoCo ALOHA sim's packages (the HIL tests, tests/hil)
#   ros/tests/interop/.venv  independent ROS 2 implementations (rosbags, mcap-ros2-support)
#   tests/onnxruntime/       the ONNX Runtime library for the `ort` backend's tests, from the
#                            pinned onnxruntime wheel on PyPI (about 17 MB; no venv needed)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages first: the test build compiles against them (tests/setup-apt.sh).
tests/setup-apt.sh

venv() {
    local dir=$1
    shift
    if [ ! -x "$dir/bin/python" ]; then
        echo "== creating $dir"
        python3 -m venv "$dir"
    fi
    echo "== installing $* into $dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "${@/#/-r}"
}

venv ros/tests/interop/.venv ros/tests/interop/requirements.txt
if [ "${SARM_SKIP_EXPORTER_ENV:-0}" != 1 ]; then
    # the sim's packages (MuJoCo, dm_control, gym-aloha, Zenoh) for the HIL tests (ros/tests/hil_loop.rs)
    venv models/tools/.venv models/tools/requirements.txt models/tools/sim/requirements.txt
fi

# The ONNX Runtime shared library the `ort` backend loads in the tests (ORT_DYLIB_PATH, or this
# folder, which the tests look in). Taken from the pinned wheel; the Rust tests need nothing else.
ORT_VERSION=1.32.0
ORT_DIR=tests/onnxruntime
if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
    echo "== installing libonnxruntime.so.$ORT_VERSION into $ORT_DIR (onnxruntime==$ORT_VERSION wheel)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    ros/tests/interop/.venv/bin/pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION"
    mkdir -p "$ORT_DIR"
    ros/tests/interop/.venv/bin/python - "$tmp" "$ORT_DIR" <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = src.glob("onnxruntime-*.whl")
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
    if not names:
        sys.exit(f"{wheel.name} has no onnxruntime/capi/libonnxruntime.so*")
    for n in names:
        (dst / pathlib.Path(n).name).write_bytes(z.read(n))
        print("   ", dst / pathlib.Path(n).name)
PY
fi

# ---- begin: rclpy (ROS 2 Kilted on Fast DDS) for ros/tests/rclpy_interop.rs -----------
# A real ROS 2 stack in the interop venv: rclpy, rmw_fastrtps_cpp, the message
# packages, and sarm_msgs' type support built with rosidl's generators
# (ros/tests/interop/setup_rclpy.sh; ~160 MB more in the venv; cold about
# 1 min of downloads and 1.5-2 min building sarm_msgs, ~10 s when done); strace comes
# with tests/setup-apt.sh.
if [ "${SARM_SKIP_RCLPY_ENV:-0}" != 1 ]; then
    bash ros/tests/interop/setup_rclpy.sh ros/tests/interop/.venv
fi
# ---- end: rclpy ----------------------------------------------------------------------------
