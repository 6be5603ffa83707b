# Shared settings for Duet's scripts; sourced, not run.
# The build directory lives outside the clone so that every clone and CI run on this machine
# reuses one warm build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/duet/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
DUET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DUET_ROOT
# RocksDB: link Debian's librocksdb (installed by scripts/setup) instead of building its C++
# (about 14 minutes on two cores).
export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/x86_64-linux-gnu}"
# No incremental-compilation state: the test builds never reuse much of it, and it grew by
# gigabytes with every change until the disk was full.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
