#!/usr/bin/env bash
# The Debian packages the test build compiles against, idempotent: FFmpeg's libraries and
# libclang for `sarm label --dataset`'s `video` feature, which the test build turns on
# (tests/Cargo.toml). Run by tests/setup.sh, and by .ci/run before it compiles (the rest of
# setup.sh runs in the background while the workspace builds). SARM_SKIP_APT=1 skips it.
set -euo pipefail

# FFmpeg 5.1 (Debian bookworm; libavcodec has libdav1d for AV1) for ffmpeg-next, and libclang for
# its bindgen build script. About 65 MB; ~32 s to install here, plus `apt-get update`.
# strace: the rclpy interop test traces where `sarm replay` sends.
APT_PACKAGES=(pkg-config libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev strace
    libegl1 libegl-mesa0 libopengl0 libgbm1)  # the last four: MuJoCo's headless rendering (MUJOCO_GL=egl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "${SARM_SKIP_APT:-0}" != 1 ]; then
    echo "== apt-get install ${missing[*]}"
    SUDO=
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            echo "tests/setup-apt.sh: run as root, or install: apt-get install ${missing[*]}" >&2
            exit 1
        }
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

