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
# Outputs built from another clone's sources: cargo takes them as this clone's when this
# clone's files are older (it compares modification times, with paths relative to the
# workspace), so on a switch of clones this clone's files are made newer and rebuilt once.
built_from="$CARGO_TARGET_DIR/.duet-built-from"
# (Two clones building at once, or a shell that sourced this before another clone built, can
# still be fooled: one clone builds at a time here.)
if [ "$(cat "$built_from" 2>/dev/null)" != "$DUET_ROOT" ]; then
  if (cd "$DUET_ROOT" && git ls-files -z | xargs -0 -r touch -c --) 2>/dev/null; then
    mkdir -p "$CARGO_TARGET_DIR" && printf '%s' "$DUET_ROOT" > "$built_from"
  fi
fi
# No incremental-compilation state: the test builds never reuse much of it, and it grew by
# gigabytes with every change until the disk was full.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
