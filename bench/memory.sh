#!/usr/bin/env bash
# Memory check (DESIGN.md: streaming, bounded memory): capturing a 6 GB, 150k-file tree must
# peak under 1 GiB RSS. Synthesizes the tree once under bench/work/mem-tree (no holes; unique,
# mostly compressible data: 4 bits of entropy per byte, so dedup cannot shrink it and zstd
# roughly halves it), captures it with the release build under GNU time, records the figure
# in docs/PERFORMANCE.md between the `bench:memory` markers, and exits 1 over the limit.
#
#   bench/memory.sh                          # 6 GB, 150k files
#   MEM_BYTES=1000000000 MEM_FILES=20000 bench/memory.sh   # a smaller try
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}
total=${MEM_BYTES:-6000000000}
files=${MEM_FILES:-150000}
limit_kib=${MEM_LIMIT_KIB:-1048576}
doc=$repo/docs/PERFORMANCE.md
tree=$work/mem-tree
image=$work/mem.oimg

die() { echo "memory: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 missing (Debian package python3)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (Debian package time)"

if [ "$(cat "$work/mem-tree.stamp" 2>/dev/null)" != "$total $files" ]; then
    echo "memory: writing $files files, $total bytes into $tree" >&2
    rm -rf "$tree" "$work/mem-tree.stamp"
    mkdir -p "$tree"
    python3 - "$tree" "$total" "$files" <<'EOF'
import os, random, sys
root, total, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20240601)
# 16 symbols: 4 bits of entropy per byte, unique everywhere, compressible about 2:1.
table = bytes(b"abcdefghijklmnop"[i % 16] for i in range(256))
# 90% small files (1-32 KiB), 10% large ones sized so the total comes out right.
small = [rng.randint(1024, 32768) for _ in range(files - files // 10)]
large_each = max(1, (total - sum(small)) // max(1, files // 10))
sizes = small + [rng.randint(large_each // 2, large_each * 3 // 2) for _ in range(files // 10)]
rng.shuffle(sizes)
per_dir = 150
for i, size in enumerate(sizes):
    d = os.path.join(root, f"d{i // per_dir // 100:03d}", f"s{i // per_dir:05d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 22)
            f.write(rng.randbytes(n).translate(table))
            left -= n
EOF
    echo "$total $files" >"$work/mem-tree.stamp"
fi

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$repo/target/release/osimage" ] || die "no release build (cargo build --release)"
rm -f "$image"
tf=$work/time.memory
echo "memory: capturing" >&2
/usr/bin/time -v -o "$tf" "$repo/target/release/osimage" capture "$tree" -o "$image" -q \
    || { cat "$tf" >&2; die "capture failed"; }
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tf")
bytes=$(du -sb "$tree" | cut -f1)
entries=$(find "$tree" | wc -l)
verdict=$([ "$rss" -le "$limit_kib" ] && echo "within" || echo "OVER")
line="- $(date -u +%Y-%m-%d), commit $(git -C "$repo" rev-parse --short HEAD): capture of"
line="$line $(numfmt --to=si "$bytes")B in $entries entries peaked at $((rss / 1024)) MiB RSS"
line="$line ($verdict the $((limit_kib / 1024)) MiB budget), wall $wall, image"
line="$line $(numfmt --to=si "$(stat -c %s "$image")")B."
echo "$line"

if [ -f "$doc" ] && grep -q '<!-- bench:memory:begin' "$doc"; then
    awk -v l="$line" '
        /<!-- bench:memory:begin/ { print; print l; skip = 1; next }
        /<!-- bench:memory:end/ { skip = 0 }
        !skip' "$doc" >"$doc.tmp"
    mv "$doc.tmp" "$doc"
fi
rm -f "$image"
[ "$verdict" = within ] || die "peak RSS $rss KiB is over the $limit_kib KiB budget"
