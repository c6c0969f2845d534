# Where the ARM64 scripts keep things (sourced by tests/cross/*.sh, after REPO is set).
#   SARM_CROSS_ROOT  the Debian trixie root with Debian's Rust and the aarch64 gcc: a toolchain
#                    install, like the host's apt packages, so it lives in the machine's cache
#                    (made once, ~1.3 GB, shared by every clone) rather than in the repository
#   SARM_CROSS_DIR   per-clone state: test binary lists, the aarch64 onnxruntime library
#   target/cross     the cargo target directory of the cross build (per clone, like target/)
CROSS_ROOT=${SARM_CROSS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/sarm/trixie-root}
CROSS_DIR=${SARM_CROSS_DIR:-$REPO/.cross}
CROSS_TARGET_DIR=$REPO/target/cross
