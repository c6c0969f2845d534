#!/usr/bin/env bash
# Installs a real ROS 2 Kilted stack (rclpy on rmw_fastrtps_cpp) into the interop
# venv and builds sarm_msgs' type support into it, for ros/tests/rclpy_interop.rs.
# Idempotent: pip skips what is installed; sarm_msgs is rebuilt only when
# ros/sarm_msgs changed. Called by tests/setup.sh after the venv exists.
#   usage: ros/tests/interop/setup_rclpy.sh [VENV]   (default ros/tests/interop/.venv)
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv=$(realpath "${1:-ros/tests/interop/.venv}")
py=$venv/bin/python

echo "== installing ros/tests/interop/rclpy-requirements.txt into $venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r ros/tests/interop/rclpy-requirements.txt

# The ROS wheels are built in a manylinux image; their exported CMake targets name
# that image's Python and numpy include folders. Point them at this venv's.
pyinc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$("$py" -c 'import numpy; print(numpy.get_include())')
# (grep finds nothing once done: not an error under pipefail.)
{ grep -rl '/opt/python/cp311-cp311/' "$venv"/share/*/cmake --include='*.cmake' 2>/dev/null || true; } |
    xargs -r sed -i \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g"

# sarm_msgs (ros/sarm_msgs, an ament interface package) with rosidl's generators,
# installed into the venv prefix like the ROS wheels' own packages.
stamp=$venv/share/sarm_msgs/.built-from
want=$(cat ros/sarm_msgs/CMakeLists.txt ros/sarm_msgs/package.xml ros/sarm_msgs/msg/*.msg | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== building sarm_msgs type support into $venv"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    (
        export PATH=$venv/bin:$PATH LD_LIBRARY_PATH=$venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        cmake -S ros/sarm_msgs -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
            -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF \
            -DCMAKE_BUILD_TYPE=Release >"$build/configure.log" 2>&1 ||
            { cat "$build/configure.log"; exit 1; }
        nice -n 10 cmake --build "$build" -j 2 >"$build/build.log" 2>&1 ||
            { tail -50 "$build/build.log"; exit 1; }
        cmake --install "$build" >/dev/null
    )
    echo "$want" >"$stamp"
fi
"$py" -c 'import rclpy, sarm_msgs.msg, sensor_msgs.msg' # fails loudly if anything is missing
