#!/usr/bin/env bash
# Packs the cross-built sarm into an arm64 .deb (dpkg-deb, no other tool):
#   /usr/bin/sarm                              the binary (stripped), from build-arm64.sh
#   /usr/share/sarm/launch/                    launch files, presets, Zenoh configs, the unit
#   /usr/share/sarm/ros/sarm_msgs/             the ament message package (colcon build it)
#   /usr/share/sarm/models/aloha-transfer-cube the ALOHA bundle (ONNX + manifest, no episodes)
#   /lib/systemd/system/sarm@.service          `sarm run --config /etc/sarm/%i.toml`
#   /etc/sarm/models, /etc/sarm/zenoh          links, so a preset copied into /etc/sarm
#                                              finds its bundle and Zenoh config unchanged
#
#   tests/cross/package-arm64.sh      (after tests/cross/build-arm64.sh bin)
# Writes target/cross/sarm_<version>_arm64.deb and lists it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"

BIN=target/cross/sarm.stripped
[ -x "$BIN" ] || { echo "package-arm64: $BIN missing; run tests/cross/build-arm64.sh bin first" >&2; exit 1; }
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The binary's newest glibc symbol version: the libc6 the package needs.
GLIBC=$(aarch64-linux-gnu-objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -u -V | tail -n 1)
STAGE=target/cross/deb
OUT=target/cross/sarm_${VERSION}_arm64.deb

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/usr/share/sarm/ros" "$STAGE/usr/share/sarm/models" \
    "$STAGE/lib/systemd/system" "$STAGE/etc/sarm" "$STAGE/usr/share/doc/sarm"
install -m 0755 "$BIN" "$STAGE/usr/bin/sarm"
cp -r launch "$STAGE/usr/share/sarm/launch"
cp -r ros/sarm_msgs "$STAGE/usr/share/sarm/ros/sarm_msgs"
bundle=models/aloha-transfer-cube
mkdir -p "$STAGE/usr/share/sarm/$bundle"
cp "$bundle"/bundle.toml "$bundle"/*.onnx "$bundle"/EVAL.md "$STAGE/usr/share/sarm/$bundle/"
install -m 0644 launch/systemd/sarm@.service "$STAGE/lib/systemd/system/sarm@.service"
ln -s ../../usr/share/sarm/models "$STAGE/etc/sarm/models"
ln -s ../../usr/share/sarm/launch/zenoh "$STAGE/etc/sarm/zenoh"
cp README.md "$STAGE/usr/share/doc/sarm/README.md"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE/usr/share" -type f -exec chmod 0644 {} +
chmod 0755 "$STAGE/usr/share/sarm/launch/zenoh/make-trainer-certs.sh"

cat > "$STAGE/DEBIAN/control" <<EOF
Package: sarm
Version: $VERSION
Architecture: arm64
Maintainer: sarm developers <sarm@example.invalid>
Depends: libc6 (>= $GLIBC), libgcc-s1
Section: science
Priority: optional
Installed-Size: $(du -sk "$STAGE" | cut -f1)
Homepage: https://example.invalid/sarm
Description: on-robot runtime for SARM stage-aware reward models
 The sarm node scores camera and joint topics (ROS 2 over DDS or rmw_zenoh) with a
 LeRobot SARM reward model, optionally drives the robot with a LeRobot ACT policy
 through a safety layer (tract or onnxruntime, fp32 or int8), publishes progress and
 streams RA-BC sample weights to a trainer. Run one instance per robot config:
 systemctl enable --now sarm@NAME runs sarm run --config /etc/sarm/NAME.toml.
EOF
# Units are picked up without a manual daemon-reload; none is enabled by the package.
for script in postinst postrm; do
    printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n' \
        > "$STAGE/DEBIAN/$script"
    chmod 0755 "$STAGE/DEBIAN/$script"
done

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT" >/dev/null
echo "== $OUT ($(stat -c %s "$OUT") bytes; libc6 >= $GLIBC)"
dpkg-deb -I "$OUT" | sed -n '/Package:/,$p'
dpkg-deb -c "$OUT"
