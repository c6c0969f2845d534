#!/usr/bin/env bash
# Installs what the tests need besides the Rust toolchain, idempotent. Part of the README's
# test command.
#   Debian packages          FFmpeg's libraries and libclang, for `sarm label --dataset`'s
#                            `video` feature, which the test build turns on (tests/Cargo.toml)
#   models/tools/.venv       LeRobot + PyTorch + onnxruntime (exporter tests; ~3 GB, first time only)
#   ros/tests/interop/.venv  independent ROS 2 implementations (rosbags, mcap-ros2-support)
set -euo pipefail
cd "$(dirname "$0")/.."

# FFmpeg 5.1 (Debian bookworm; libavcodec has libdav1d for AV1) for ffmpeg-next, and libclang for
# its bindgen build script. About 65 MB; ~32 s to install here, plus `apt-get update`.
APT_PACKAGES=(pkg-config libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "${SARM_SKIP_APT:-0}" != 1 ]; then
    echo "== apt-get install ${missing[*]}"
    SUDO=
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            echo "tests/setup.sh: run as root, or install: apt-get install ${missing[*]}" >&2
            exit 1
        }
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
