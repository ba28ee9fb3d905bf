#!/bin/bash
# Runs every fuzz target for a bounded time (not part of CI's default run; issue #7).
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      default: 180 s, all targets
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Seeds come from a
# small image captured with the release binary (cargo build --release first). A crash leaves
# its input in fuzz/artifacts/TARGET/; copy it to tests/fuzz-regressions/TARGET/ so
# tests/fuzz_regressions.rs keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-180}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest manifest_columns oimg iso layout store_config store_index store_lock store_prune store_pin store_version store_sealed)
bin=../target/release/osimage
[ -x "$bin" ] || { echo "build the release binary first: cargo build --release" >&2; exit 1; }

seed_dir=$(mktemp -d)
trap 'rm -rf "$seed_dir"' EXIT
mkdir -p "$seed_dir/src/etc" corpus/{manifest,manifest_columns,oimg,iso,layout,store_config,store_index,store_lock,store_prune,store_pin,store_version,store_sealed}
echo "seed" > "$seed_dir/src/etc/hostname"
head -c 70000 /dev/urandom > "$seed_dir/src/blob"
ln -s hostname "$seed_dir/src/etc/link"
"$bin" capture -q "$seed_dir/src" -o "$seed_dir/seed.oimg"
cp "$seed_dir/seed.oimg" corpus/oimg/seed.oimg
# The manifest frame: trailer bytes 16..24 = offset M, 24..32 = length F (FORMAT.md §6.1).
python3 - "$seed_dir/seed.oimg" corpus/manifest/seed.osm <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
m, f = struct.unpack_from('<QQ', b, len(b) - 64 + 16)
open(sys.argv[2], 'wb').write(b[m:m + f])
PY
# The same manifest's body decompressed (FORMAT.md §4: the frame's 64-byte header, then zstd):
# the columns of §5.7, for the decoder alone.
tail -c +65 corpus/manifest/seed.osm | zstd -dcq > corpus/manifest_columns/seed.body
# An ISO with the payload names the reader looks up (/osimage/manifest.osm, a pack), Rock
# Ridge and Joliet.
if command -v xorriso >/dev/null; then
    mkdir -p "$seed_dir/iso/osimage/packs"
    cp -a "$seed_dir/src/etc" "$seed_dir/iso/"
    cp corpus/manifest/seed.osm "$seed_dir/iso/osimage/manifest.osm"
    head -c 4096 "$seed_dir/seed.oimg" > "$seed_dir/iso/osimage/packs/pack-000000.osp"
    xorriso -as mkisofs -quiet -R -J -o corpus/iso/seed.iso "$seed_dir/iso" 2>/dev/null
fi
# Layout records (FORMAT.md §9): kept in seeds/layout, made from osimage's default layout.
cp seeds/layout/* corpus/layout/
# Store objects (docs/STORE.md §2): one valid config, index, lock, condemnation, pin and version object each, written
# once by the library's encoders (their bodies are hashed, so the fuzzer needs a valid start).
for t in store_config store_index store_lock store_prune store_pin store_version store_sealed; do cp seeds/$t/* corpus/$t/; done

# One process per target (libFuzzer without -jobs/-workers: a single job), one target after
# the other: the machine is shared.
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s ($(date -u +%FT%TZ))"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        -max_len=1048576 -timeout=30
    echo "== $t done ($(date -u +%FT%TZ))"
done
