#!/usr/bin/env bash
# Cross-builds sarm for aarch64-unknown-linux-gnu (Jetson: JetPack 6 / Ubuntu 22.04, glibc 2.35)
# from Debian's packages only: no rustup target, no nightly, no download outside apt and crates.io.
#
#   tests/cross/build-arm64.sh [bin] [tests PKG[:TEST,...]]...
#     bin                       the `sarm` binary (default when no argument is given), then
#                               the glibc symbol ceiling check (fails above GLIBC_CEILING)
#     tests sarm-runtime:golden_parity,encoder_and_smoother
#                               test binaries of a package (`cargo test --no-run`), all of its
#                               integration tests when no list is given; their paths are
#                               written to $SARM_CROSS_DIR/test-binaries.txt
#
# How: rustup cannot fetch targets here, and Debian bookworm's rustc-web (1.85) is older than
# the workspace's rust-version. Debian trixie ships rustc-web/cargo-web together with the
# aarch64 standard library built by that same compiler (libstd-rust-web-dev:arm64), but they
# need glibc >= 2.39. So a trixie root (mmdebstrap) holds the compiler and the aarch64 cross
# gcc; the repository is bind-mounted into it at its own path, and the host's crates.io
# registry (filled by `cargo fetch` on the host) is mounted as the root's cargo registry, so
# the build inside runs --offline and nothing is downloaded twice. Linking against trixie's
# glibc 2.41 is safe as long as no symbol newer than the target's glibc is referenced; the
# ceiling check below proves that on every build.
#
# The trixie root is kept in the machine's cache (tests/cross/paths.sh: SARM_CROSS_ROOT, default
# ~/.cache/sarm/trixie-root), the build in target/cross/ and the lists in .cross/ (git-ignored):
# a second run reuses all three.
# Heavy steps run under `nice -n ${SARM_CROSS_NICE:-15}` with ${SARM_CROSS_JOBS:-2} jobs.
#
# Features: sarm-ros's defaults, which are what a robot runs: tract, onnxruntime through `ort`
# load-dynamic (no native library at build time), DDS, Zenoh with TLS. The optional `video`
# feature (FFmpeg, for `sarm label --dataset` on a workstation) is left out: it would tie the
# binary to one FFmpeg soname that JetPack does not ship. SARM_CROSS_FEATURES adds features.
# Profile: release (the tests too, so tract is compiled once).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"

TARGET=aarch64-unknown-linux-gnu
. "$REPO/tests/cross/paths.sh"
ROOT=$CROSS_ROOT
TARGET_DIR=$CROSS_TARGET_DIR
JOBS=${SARM_CROSS_JOBS:-2}
NICE=${SARM_CROSS_NICE:-15}
GLIBC_CEILING=${GLIBC_CEILING:-2.35}
DEBIAN_MIRROR=${SARM_CROSS_MIRROR:-http://deb.debian.org/debian}
HOST_PACKAGES=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu mmdebstrap)
ROOT_PACKAGES=ca-certificates,gcc,libc6-dev,rustc-web,cargo-web,libstd-rust-web-dev:arm64,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross
HOST_CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'build-arm64: %s\n' "$*" >&2; exit 1; }

host_packages() {
    local missing=()
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing host packages: ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# The trixie root with Debian's Rust toolchain and the aarch64 cross gcc. Made once; the stamp
# records what it was made with, so a changed package list makes a new root.
make_root() {
    local want="$ROOT_PACKAGES $DEBIAN_MIRROR"
    if [ -f "$ROOT/.sarm-root" ] && [ "$(cat "$ROOT/.sarm-root")" = "$want" ]; then
        return
    fi
    log "making the trixie root in $ROOT (mmdebstrap; a few minutes, ~1.3 GB)"
    mkdir -p "$(dirname "$ROOT")"
    rm -rf "$ROOT.tmp" "$ROOT"
    nice -n "$NICE" mmdebstrap --mode=root --variant=apt --architectures=amd64,arm64 \
        --include="$ROOT_PACKAGES" trixie "$ROOT.tmp" "$DEBIAN_MIRROR"
    printf '%s' "$want" > "$ROOT.tmp/.sarm-root"
    mv "$ROOT.tmp" "$ROOT"
}

# Runs a command inside the root, in a private mount namespace (the mounts go with it):
# /proc, /dev, the repository at its own path, the host's cargo registry.
in_root() {
    mkdir -p "$ROOT$REPO" "$ROOT/root/.cargo/registry" "$HOST_CARGO_HOME/registry"
    unshare --mount --propagation private -- /bin/sh -c '
        set -e
        root=$1 repo=$2 registry=$3; shift 3
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --bind "$repo" "$root$repo"
        mount --bind "$registry" "$root/root/.cargo/registry"
        exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
            CARGO_HOME=/root/.cargo "$@"
    ' in_root "$ROOT" "$REPO" "$HOST_CARGO_HOME/registry" "$@"
}

features_args() {
    if [ -n "${SARM_CROSS_FEATURES:-}" ]; then
        echo "--features=$SARM_CROSS_FEATURES"
    fi
}

# cargo inside the root, for the target, offline, release.
root_cargo() {
    local sub=$1; shift
    in_root /bin/sh -c 'cd "$1" && shift && exec nice -n "$0" "$@"' "$NICE" "$REPO" \
        /usr/bin/env CARGO_TARGET_DIR="$TARGET_DIR" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
        cargo "$sub" --offline --locked --release --target "$TARGET" -j "$JOBS" "$@"
}

# Fails when the binary references a glibc symbol version above the ceiling.
check_glibc_ceiling() {
    local bin=$1 top
    top=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
        | sort -u -V | tail -n 1)
    [ -n "$top" ] || die "no GLIBC_ symbol versions found in $bin"
    log "glibc symbol ceiling of $(basename "$bin"): GLIBC_$top (allowed: <= $GLIBC_CEILING)"
    if [ "$(printf '%s\n%s\n' "$top" "$GLIBC_CEILING" | sort -V | tail -n 1)" != "$GLIBC_CEILING" ]; then
        aarch64-linux-gnu-objdump -T "$bin" | grep -E "GLIBC_$top\b" >&2 || true
        die "$bin needs GLIBC_$top, above the target's $GLIBC_CEILING (JetPack 6 / Ubuntu 22.04)"
    fi
    log "shared libraries: $(aarch64-linux-gnu-readelf -d "$bin" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
}

build_bin() {
    local feats
    feats=$(features_args)
    log "building sarm for $TARGET (features: default${feats:+ $feats}, -j $JOBS, nice $NICE)"
    root_cargo build -p sarm-ros --bin sarm $feats
    local bin=$TARGET_DIR/$TARGET/release/sarm
    file "$bin" 2>/dev/null || true
    check_glibc_ceiling "$bin"
    aarch64-linux-gnu-strip -o "$TARGET_DIR/sarm.stripped" "$bin"
    log "size: $(stat -c %s "$bin") bytes as built, $(stat -c %s "$TARGET_DIR/sarm.stripped") bytes stripped ($TARGET_DIR/sarm.stripped)"
}

# `tests PKG[:a,b]`: builds those test binaries and appends their paths (with the package's
# directory, the working directory cargo would give them) to test-binaries.txt.
build_tests() {
    local spec=$1 pkg tests args=() feats
    pkg=${spec%%:*}
    if [ "$pkg" != "$spec" ]; then
        IFS=, read -r -a tests <<< "${spec#*:}"
        for t in "${tests[@]}"; do args+=(--test "$t"); done
    else
        args=(--tests)
    fi
    feats=$(features_args)
    [ "$pkg" = sarm-ros ] || feats=""
    log "building test binaries of $spec for $TARGET"
    root_cargo test --no-run -p "$pkg" "${args[@]}" $feats --message-format=json \
        > "$CROSS_DIR/cargo-test-$pkg.json"
    python3 - "$CROSS_DIR/cargo-test-$pkg.json" >> "$CROSS_DIR/test-binaries.txt" <<'EOF'
import json, os, sys
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["executable"])
EOF
}

host_packages
make_root
log "fetching crates on the host (the root builds offline from this registry)"
cargo fetch --locked --target "$TARGET" --target x86_64-unknown-linux-gnu >/dev/null
mkdir -p "$CROSS_DIR"
: > "$CROSS_DIR/test-binaries.txt"
[ $# -gt 0 ] || set -- bin
while [ $# -gt 0 ]; do
    case $1 in
        bin) build_bin; shift ;;
        tests) [ $# -ge 2 ] || die "tests needs a package"; build_tests "$2"; shift 2 ;;
        *) die "unknown argument $1 (bin | tests PKG[:TEST,...])" ;;
    esac
done
