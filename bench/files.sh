#!/usr/bin/env bash
# Scaling with the number of files (issue #23), side by side with tar | zstd -3 -T0 in one run:
# a tree of many small text files (200 B to 4 KiB, 100 a directory), hot cache, every output
# fsynced inside its timing, medians of the rounds. Measures capture time, output size and
# peak RSS of both, osimage's manifest bytes per entry (read from the .oimg trailer), and the
# peak RSS of osimage list, verify, extract and restore --to (the files-only restore: the
# same unpack as a disk restore's, see docs/PERFORMANCE.md "Memory an entry"), with the growth
# in bytes per entry over an empty tree, and extract time against zstd -dc | tar -x (both followed by a syncfs of the
# output's filesystem inside their time: an fsync a file would cost more than either tool). Results go into docs/PERFORMANCE.md between the `bench:files` markers.
#
#   bench/files.sh                     # 500,000 files
#   FILES=2000000 bench/files.sh       # the memory goal's size
#   BENCH_ROUNDS=1 FILES=100000 bench/files.sh   # a quick try
#   BENCH_NO_BUILD=1 bench/files.sh    # use the existing target/release/osimage
#   OSIMAGE=/path/to/osimage BENCH_NO_BUILD=1 bench/files.sh   # another build of it
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}
files=${FILES:-500000}
rounds=${BENCH_ROUNDS:-3}
doc=$repo/docs/PERFORMANCE.md
results=$work/files.results
tree=$work/files-$files
osimage=${OSIMAGE:-$repo/target/release/osimage}

# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
case $files in '' | *[!0-9]* | 0) die "FILES must be a positive number, not '$files'" ;; esac
case $rounds in '' | *[!0-9]* | 0) die "BENCH_ROUNDS must be a positive number, not '$rounds'" ;; esac
for t in python3 zstd tar; do
    command -v $t >/dev/null || die "$t missing (Debian package $t)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time missing (Debian package time)"

mkdir -p "$work"
if [ ! -f "$tree/.complete" ]; then
    echo "files: writing $files files into $tree" >&2
    rm -rf "$tree"
    mkdir -p "$tree"
    python3 - "$tree" "$files" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(23)
letters = b"abcdefghijklmnopqrstuvwxyz"
words = [bytes(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(4000)]
for i in range(files):
    d = os.path.join(root, f"d{i // 10000:04d}", f"s{i // 100:06d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = rng.randint(200, 4096)
    text = b" ".join(rng.choices(words, k=size // 4 + 8))[:size]
    with open(os.path.join(d, f"note-{i:07d}.txt"), "wb") as f:
        f.write(text)
EOF
    touch "$tree/.complete"
fi
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$osimage" ] || die "no release build (cargo build --release)"
entries=$(find "$tree" | wc -l)
empty=$work/files-empty
mkdir -p "$empty"

# Hot cache: read the whole tree once.
tar -C "$tree" -cf - . >/dev/null
: >"$results"
for r in $(seq "$rounds"); do
    echo "files: round $r of $rounds" >&2
    rm -f "$work/files.oimg" "$work/files.tar.zst" "$work/empty.oimg"
    timed tar capture "$work/files.tar.zst" "$work/tar.log" sh -c \
        "tar -C '$tree' --xattrs --acls -cf - . | zstd -3 -T0 -q -o '$work/files.tar.zst' && sync '$work/files.tar.zst'"
    timed osimage capture "$work/files.oimg" "$work/osimage.log" \
        "$osimage" capture "$tree" -o "$work/files.oimg" -q
    timed osimage list "$work/files.oimg" "$work/list.log" sh -c \
        "'$osimage' list '$work/files.oimg' >/dev/null"
    timed osimage verify "$work/files.oimg" "$work/verify.log" "$osimage" verify "$work/files.oimg"
    rm -rf "$work/files-out"
    timed osimage extract "$work/files-out" "$work/extract.log" \
        "$osimage" extract "$work/files.oimg" -C "$work/files-out"
    rm -rf "$work/files-out"
    timed osimage restore "$work/files-out" "$work/restore.log" \
        "$osimage" restore --to "$work/files-out" -q "$work/files.oimg"
    rm -rf "$work/files-out"
    mkdir "$work/files-out"
    timed tar extract "$work/files-out" "$work/tar-x.log" sh -c \
        "zstd -dc '$work/files.tar.zst' | tar --xattrs --acls -xf - -C '$work/files-out' && sync -f '$work/files-out'"
    rm -rf "$work/files-out"
    timed osimage extract-synced "$work/files.oimg" "$work/extract-synced.log" sh -c \
        "'$osimage' extract '$work/files.oimg' -C '$work/files-out' -q && sync -f '$work/files-out'"
    timed empty capture "$work/empty.oimg" "$work/empty.log" \
        "$osimage" capture "$empty" -o "$work/empty.oimg" -q
    timed empty list "$work/empty.oimg" "$work/empty-list.log" sh -c \
        "'$osimage' list '$work/empty.oimg' >/dev/null"
done
rm -rf "$work/files-out"

# The manifest frame's length F: bytes 24..32 of the .oimg's 64-byte trailer (FORMAT.md §6.1).
manifest=$(tail -c 64 "$work/files.oimg" | od -An -t u8 -j 24 -N 8 | tr -d ' ')

median() { # NAME PHASE COLUMN (3 wall, 4 cpu, 5 rss KiB, 6 size)
    awk -F'\t' -v n="$1" -v p="$2" -v c="$3" '$1 == n && $2 == p { print $c }' "$results" \
        | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
per_entry() { awk -v a="$1" -v b="$2" -v n="$entries" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'; }

ow=$(median osimage capture 3); tw=$(median tar capture 3)
os=$(median osimage capture 6); ts=$(median tar capture 6)
orss=$(median osimage capture 5); trss=$(median tar capture 5)
erss=$(median empty capture 5); elrss=$(median empty list 5)
section=$work/files.section
{
    echo "<!-- bench:files:begin (bench/files.sh writes this section) -->"
    echo "$(date -u +%Y-%m-%d), commit $(git -C "$repo" rev-parse --short HEAD), $(nproc) cores:"
    echo "$entries entries ($files files of 200 B–4 KiB), $(du -sb "$tree" | cut -f1 | numfmt --to=iec)B;"
    echo "medians of $rounds rounds, hot cache, outputs fsynced."
    echo
    echo "| | osimage | tar --xattrs --acls \\| zstd -3 -T0 | ratio |"
    echo "|---|---|---|---|"
    echo "| capture wall s | $ow | $tw | $(ratio "$ow" "$tw") |"
    echo "| output bytes | $os | $ts | $(ratio "$os" "$ts") |"
    echo "| capture peak RSS MiB | $((orss / 1024)) | $((trss / 1024)) | $(ratio "$orss" "$trss") |"
    xo=$(median osimage extract-synced 3); xt=$(median tar extract 3)
    echo "| extract wall s (then syncfs) | $xo | $xt | $(ratio "$xo" "$xt") |"
    echo
    echo "Manifest: $manifest bytes, $(awk -v m="$manifest" -v n="$entries" 'BEGIN { printf "%.1f", m / n }') bytes an entry."
    echo "Peak RSS growth over an empty tree, bytes an entry: capture $(per_entry "$orss" "$erss"),"
    echo "list $(per_entry "$(median osimage list 5)" "$elrss"), verify $(per_entry "$(median osimage verify 5)" "$elrss"),"
    echo "extract $(per_entry "$(median osimage extract 5)" "$elrss"), restore --to $(per_entry "$(median osimage restore 5)" "$elrss")"
    echo "(peak RSS MiB: list $(($(median osimage list 5) / 1024)), verify $(($(median osimage verify 5) / 1024)),"
    echo "extract $(($(median osimage extract 5) / 1024)), restore --to $(($(median osimage restore 5) / 1024)))."
    echo "<!-- bench:files:end -->"
} >"$section"
replace_section files "$section" "$doc"
rm -f "$work/files.oimg" "$work/files.tar.zst" "$work/empty.oimg"
