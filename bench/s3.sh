#!/usr/bin/env bash
# Images kept whole as one S3 object (issue #22, docs/STORE.md §1.1), against a single-node
# Garage on loopback (the one the `store` tests use): import, then extract from the bucket
# against extract from the local file (alternately, BENCH_ROUNDS times), then 1, 4 and 8
# `osimage verify` runs at once (every block read and checked, as a restore reads them) from
# the bucket and from the local file, with the Garage server's own CPU time for each. Results
# go into docs/PERFORMANCE.md between the `bench:s3` markers.
#
#   bench/s3.sh                                # the e2e base tree (tests/cache/e2e/base-*)
#   BENCH_S3_ROOT=/usr/share bench/s3.sh       # another tree
#   BENCH_NO_BUILD=1 BENCH_ROUNDS=5 bench/s3.sh
#
# Needs root, GNU time, Garage (bash .ci/garage-build; or OSIMAGE_GARAGE=/path/to/garage) and
# about 3x the tree's size free under bench/work (gitignored).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}/s3
root=${BENCH_S3_ROOT:-$(ls -d "$repo"/tests/cache/e2e/base-*/ 2>/dev/null | head -1)}
rounds=${BENCH_ROUNDS:-3}
doc=$repo/docs/PERFORMANCE.md

# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (extract keeps owners)"
[ -n "$root" ] && [ -d "$root" ] || die "no tree: set BENCH_S3_ROOT (default: the e2e base tree, built by the vm tests)"
garage=${OSIMAGE_GARAGE:-/var/cache/osimage-ci/garage-$(cat "$repo/.ci/garage-version")/bin/garage}
[ -x "$garage" ] || die "no Garage at $garage (bash .ci/garage-build, or OSIMAGE_GARAGE=...)"
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
osimage=$repo/target/release/osimage
[ -x "$osimage" ] || die "no release build (cargo build --release)"

rm -rf "$work"
mkdir -p "$work"
image=$work/system.oimg
echo "bench: capturing $root" >&2
"$osimage" capture "$root" -o "$image" -q
image_bytes=$(stat -c %s "$image")

# --- Garage, single node, a key and a bucket made by its --default-bucket ---------------------
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rpc=$(port) s3=$(port) admin=$(port)
cat >"$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
export AWS_ACCESS_KEY_ID=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AWS_SECRET_ACCESS_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AWS_REGION=garage AWS_ENDPOINT_URL=http://127.0.0.1:$s3
export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    GARAGE_DEFAULT_BUCKET=bench \
    "$garage" -c "$work/garage.toml" server --single-node --default-bucket \
    >"$work/garage.log" 2>&1 &
garage_pid=$!
trap 'kill $garage_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    "$garage" -c "$work/garage.toml" bucket info bench >/dev/null 2>&1 && break
    sleep 0.2
done
"$garage" -c "$work/garage.toml" bucket info bench >/dev/null 2>&1 \
    || { tail -20 "$work/garage.log" >&2; die "Garage did not come up"; }
url=s3://bench/system.oimg

# Garage's CPU seconds so far (user + system, from /proc).
garage_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$garage_pid/stat"; }
# seconds COMMAND...: the wall time of COMMAND, in seconds with two decimals.
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; die "$* failed"; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

import_s=$(seconds "$osimage" import "$image" "$url" -q)

extract() { rm -rf "$work/out"; "$osimage" extract "$1" -C "$work/out" -q && sync; }
local_t=() s3_t=() ratios=()
for _ in $(seq "$rounds"); do
    l=$(seconds extract "$image")
    c0=$(garage_cpu)
    r=$(seconds extract "$url")
    c1=$(garage_cpu)
    local_t+=("$l") s3_t+=("$r") ratios+=("$(awk -v a="$l" -v b="$r" 'BEGIN { printf "%.2f", b / a }')")
    extract_garage_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')
done
rm -rf "$work/out"
cost=$("$osimage" verify "$url" 2>&1 >/dev/null | grep -o '[0-9]* requests.*' | head -1)

# n_verifies N SOURCE: N verify runs of SOURCE at once; prints their wall time.
n_verifies() {
    local n=$1 src=$2 t0 t1 pids=()
    t0=$(date +%s.%N)
    for i in $(seq "$n"); do
        "$osimage" verify "$src" -q >/dev/null 2>"$work/verify.$i.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { cat "$work"/verify.*.err >&2; die "verify failed"; }; done
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
rows=()
for n in 1 4 8; do
    lw=$(n_verifies "$n" "$image")
    c0=$(garage_cpu)
    sw=$(n_verifies "$n" "$url")
    c1=$(garage_cpu)
    rows+=("| $n | $lw | $sw | $(awk -v n="$n" -v b="$image_bytes" -v t="$sw" 'BEGIN { printf "%.0f", n * b / t / 1048576 }') | $(awk -v a="$lw" -v b="$sw" 'BEGIN { printf "%.2f", b / a }') | $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }') |")
done

join() { local out="" x; for x in "$@"; do out+="${out:+, }$x"; done; echo "$out"; }
section=$work/section.md
{
    echo "<!-- bench:s3:begin (generated by bench/s3.sh; edits here are overwritten) -->"
    echo "### Latest S3 run"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load at the end $(cut -d' ' -f1-3 /proc/loadavg);"
    echo "Garage $(cat "$repo/.ci/garage-version") single node (LMDB) on loopback; tree \`${root#"$repo"/}\`,"
    echo "image $(awk -v b="$image_bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }') (.oimg)."
    echo "\`osimage import\`: ${import_s} s."
    echo
    echo "| extract + sync, $rounds rounds | s |"
    echo "|---|---|"
    echo "| local file | $(join "${local_t[@]}") |"
    echo "| s3:// object | $(join "${s3_t[@]}") |"
    echo "| ratio | $(join "${ratios[@]}") |"
    echo
    echo "One read of every block from the bucket (\`verify\`): $cost; Garage CPU for the last"
    echo "extract: ${extract_garage_cpu} s."
    echo
    echo "N \`osimage verify\` at once (every block read and checked, as N restores read them):"
    echo
    echo "| N | local file, s | s3:// object, s | aggregate from S3, MiB/s | ratio | Garage CPU, s |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo "<!-- bench:s3:end -->"
} >"$section"

replace_section s3 "$section" "$doc"
