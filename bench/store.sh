#!/usr/bin/env bash
# The image store against restic, side by side in one run, both on the same single-node Garage
# on loopback (issue #22, docs/STORE.md §12.7): a first capture into the store and a first
# `restic backup`; the same again with nothing changed (goal: osimage uploads below 1% of the
# image); again after 64 bytes changed in the middle of 100 files; then a restore from the
# store against one from a local .oimg of the same tree (goal: within 1.2x) and `restic
# restore`; then 1, 4 and 8 extracts from the store at once (aggregate MiB/s, Garage's CPU).
# Uploaded bytes: osimage's from the version head (`new_bytes`), restic's from its JSON
# summary (`data_added_packed` when it has it, else `data_added`). Results go into
# docs/PERFORMANCE.md between the `bench:store` markers.
#
#   bench/store.sh                                  # the e2e base tree (tests/cache/e2e/base-*)
#   BENCH_STORE_ROOT=/usr/share bench/store.sh      # another tree
#   BENCH_NO_BUILD=1 bench/store.sh
#   BENCH_ROUNDS=5 bench/store.sh                   # restores: rounds in rotated order (3)
#
# Needs root, restic (apt-get install restic), Garage (bash .ci/garage-build; or
# OSIMAGE_GARAGE=/path/to/garage) and about 12x the tree's size free under bench/work.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}/store
root=${BENCH_STORE_ROOT:-$(ls -d "$repo"/tests/cache/e2e/base-*/ 2>/dev/null | head -1)}
doc=${BENCH_DOC:-$repo/docs/PERFORMANCE.md}

# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (capture reads every file, extract keeps owners)"
[ -n "$root" ] && [ -d "$root" ] || die "no tree: set BENCH_STORE_ROOT (default: the e2e base tree, built by the vm tests)"
command -v restic >/dev/null || die "no restic (apt-get install restic)"
garage=${OSIMAGE_GARAGE:-/var/cache/osimage-ci/garage-$(cat "$repo/.ci/garage-version")/bin/garage}
[ -x "$garage" ] || die "no Garage at $garage (bash .ci/garage-build, or OSIMAGE_GARAGE=...)"
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
osimage=$repo/target/release/osimage
[ -x "$osimage" ] || die "no release build (cargo build --release)"

rm -rf "$work"
mkdir -p "$work"
tree=$work/tree
echo "bench: copying $root" >&2
cp -a "$root/." "$tree"
# Files written moments before a capture are read again next time (docs/REFRESH.md).
sleep 3

start_garage "$garage" "$work"
export AWS_DEFAULT_REGION=garage XDG_CACHE_HOME=$work/cache

store=s3://bench/store
series=$store/system
export RESTIC_REPOSITORY=s3:http://127.0.0.1:$s3/bench/restic
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache

garage_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$garage_pid/stat"; }
# seconds COMMAND...: COMMAND's wall time in seconds (two decimals); its stdout in $work/last.out.
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$work/last.out" 2>"$work/last.err" || { cat "$work/last.err" >&2; die "$* failed"; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
# The newest version's uploaded bytes (its head's new_bytes).
osimage_new_bytes() {
    "$osimage" store ls "$store" -l --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
vs = [v for s in d["series"] for v in s["versions"]]
print(vs[-1]["head"]["new_bytes"])'
}
# restic's bytes added to the repository by the last backup (its --json summary in last.out).
restic_added() {
    python3 -c '
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
s = [x for x in s if x.get("message_type") == "summary"][-1]
print(s.get("data_added_packed", s["data_added"]))' "$work/last.out"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

"$osimage" store init "$store" >/dev/null
restic init >/dev/null

rows=()
# capture_pair PHASE: one osimage capture into the store and one restic backup of the tree.
capture_pair() {
    local o r ob rb
    o=$(seconds "$osimage" capture "$tree" -o "$series" -q)
    ob=$(osimage_new_bytes)
    r=$(seconds restic backup --json --quiet "$tree")
    rb=$(restic_added)
    rows+=("| $1 | $o | $(mib "$ob") | $r | $(mib "$rb") | $(awk -v a="$r" -v b="$o" 'BEGIN { printf "%.2f", b / a }') |")
    last_new=$ob
}
echo "bench: first capture and backup" >&2
capture_pair "first"
image_bytes=$("$osimage" store ls "$store" -l --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([v for s in d["series"] for v in s["versions"]][-1]["head"]["stored_bytes"])')
sleep 1
echo "bench: unchanged" >&2
capture_pair "nothing changed"
unchanged_pct=$(awk -v n="$last_new" -v t="$image_bytes" 'BEGIN { printf "%.3f", 100 * n / t }')
echo "bench: 100 files changed" >&2
mapfile -t files < <(find "$tree" -type f -size +8k | sort)
step=$(( ${#files[@]} / 100 > 0 ? ${#files[@]} / 100 : 1 ))
changed=0
for ((i = 0; i < ${#files[@]} && changed < 100; i += step)); do
    f=${files[$i]}
    size=$(stat -c %s "$f")
    head -c 64 /dev/urandom | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
    changed=$((changed + 1))
done
sleep 3
capture_pair "$changed files changed (64 B each)"

# --- restore: the store against a local .oimg of the same tree, and restic -----------------
echo "bench: restores" >&2
"$osimage" capture "$tree" -o "$work/local.oimg" -q
# The restored tree's filesystem synced (syncfs, as bench/files.sh does): a system-wide sync
# would also wait for other filesystems; fsync file by file costs more than the restore.
sync_tree() { sync -f "$1"; }
# Each restore starts from an empty folder, the previous one removed and synced outside the
# timed part (a removal of ~700 MiB of files inside it cost the later runs seconds).
extract() { "$osimage" extract "$1" -C "$work/out" -q && sync_tree "$work/out"; }
restic_restore() { restic restore latest --target "$work/out" --quiet && sync_tree "$work/out"; }
fresh_out() { rm -rf "$work/out"; sync; }
# Rounds in rotated order (local, store, restic; then store, restic, local; ...), medians:
# each restore writes ~700 MiB to the disk's page cache, and on a quiet 2026-12-07 the first
# restore of the sequence took 1.3-1.4 s where every later one, local or store, took 5.6-7.8 s
# (so one run in a fixed order, local first, put 1.31 s against 5.35 s: the order, not the
# store; into a tmpfs the two extracts are equal).
rounds=${BENCH_ROUNDS:-3}
local_t=() store_t=() restic_t=()
restore_one() {
    fresh_out
    case $1 in
        local) local_t+=("$(seconds extract "$work/local.oimg")") ;;
        store) store_t+=("$(seconds extract "$series")") ;;
        restic) restic_t+=("$(seconds restic_restore)") ;;
    esac
}
order=(local store restic)
for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < 3; k++)); do restore_one "${order[(r + k) % 3]}"; done
done
fresh_out
median_of() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
local_s=$(median_of "${local_t[@]}")
store_s=$(median_of "${store_t[@]}")
restic_s=$(median_of "${restic_t[@]}")

# --- N extracts from the store at once --------------------------------------------------------
n_extracts() {
    local n=$1 t0 t1 pids=()
    rm -rf "$work"/par.*
    t0=$(date +%s.%N)
    for i in $(seq "$n"); do
        "$osimage" extract "$series" -C "$work/par.$i" -q 2>"$work/par.$i.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { cat "$work"/par.*.err >&2; die "extract failed"; }; done
    for i in $(seq "$n"); do sync_tree "$work/par.$i"; done
    t1=$(date +%s.%N)
    rm -rf "$work"/par.*
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
par=()
for n in 1 4 8; do
    c0=$(garage_cpu)
    w=$(n_extracts "$n")
    c1=$(garage_cpu)
    par+=("| $n | $w | $(awk -v n="$n" -v b="$image_bytes" -v t="$w" 'BEGIN { printf "%.0f", n * b / t / 1048576 }') | $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }') |")
done

section=$work/section.md
{
    echo "<!-- bench:store:begin (generated by bench/store.sh; edits here are overwritten) -->"
    echo "### Latest store run"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load at the end $(cut -d' ' -f1-3 /proc/loadavg);"
    echo "Garage $(cat "$repo/.ci/garage-version") single node (LMDB) on loopback; restic $(restic version | awk '{print $2}');"
    echo "tree \`${root#"$repo"/}\` ($(du -sh "$tree" | cut -f1)), stored $(mib "$image_bytes") MiB in the store."
    echo
    echo "| capture | osimage s | osimage uploaded MiB | restic s | restic added MiB | time ratio |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Unchanged re-capture uploaded ${unchanged_pct}% of the stored image (goal: below 1%)."
    echo
    echo "| restore (extract + sync), median of $rounds rounds in rotated order | s | each round |"
    echo "|---|---|---|"
    echo "| osimage from a local .oimg | $local_s | ${local_t[*]} |"
    echo "| osimage from the store | $store_s ($(awk -v a="$local_s" -v b="$store_s" 'BEGIN { printf "%.2f", b / a }')x the local file; goal 1.2x) | ${store_t[*]} |"
    echo "| restic restore | $restic_s | ${restic_t[*]} |"
    echo
    echo "| N extracts from the store at once | wall s | aggregate MiB/s (stored bytes) | Garage CPU s |"
    echo "|---|---|---|---|"
    printf '%s\n' "${par[@]}"
    echo "<!-- bench:store:end -->"
} >"$section"

replace_section store "$section" "$doc"
