#!/bin/sh
# Compare osimage's ISO writer with `xorriso -as mkisofs` on the same files.
# Usage: bench/iso.sh [PACK_MIB [SMALL_FILES]]   (defaults: 2048 MiB of packs, 2000 small files)
# The tree imitates a capture: 1 GiB-bounded pack files of random data, a manifest, and many
# small files (rescue environment). Both writers get a hot cache and include the final sync
# (osimage's write_iso fsyncs; xorriso is followed by `sync`). Best of 3 runs each.
# ISO_BENCH_OUT=/dev/shm puts the two images on tmpfs: the writers' own cost without the
# (very noisy, on shared VMs) disk writeback.
set -eu
cd "$(dirname "$0")/.."
pack_mib=${1:-2048}
small=${2:-2000}
work=bench/work/iso
src="$work/src"
out=${ISO_BENCH_OUT:-$work}
command -v xorriso >/dev/null || { echo "install xorriso" >&2; exit 1; }
if [ ! -f "$src/.done-$pack_mib-$small" ]; then
    rm -rf "$src"; mkdir -p "$src/osimage/packs" "$src/rescue"
    left=$pack_mib; i=0
    while [ "$left" -gt 0 ]; do
        n=$(( left > 1024 ? 1024 : left ))
        head -c "${n}M" /dev/urandom > "$src/osimage/packs/pack-$(printf %06d $i).opk"
        left=$(( left - n )); i=$(( i + 1 ))
    done
    head -c 4M /dev/urandom > "$src/osimage/manifest.bin"
    j=0
    while [ "$j" -lt "$small" ]; do
        d="$src/rescue/d$(( j / 100 ))"; mkdir -p "$d"
        head -c $(( (j * 7919) % 65536 )) /dev/urandom > "$d/f$j"
        j=$(( j + 1 ))
    done
    touch "$src/.done-$pack_mib-$small"
fi
# build once, then run the test binary itself (cargo could rebuild between runs)
bin=$(cargo test --release --test integration --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "building the bench harness failed" >&2; exit 1; }
cat $(find "$src" -type f) > /dev/null   # hot cache for both
best() { sort -n | head -n1; }
ours=""; theirs=""
for run in 1 2 3; do
    rm -f "$out/ours.iso" "$out/xorriso.iso"; sync
    t0=$(date +%s.%N)
    OSIMAGE_BENCH_SRC="$src" OSIMAGE_BENCH_OUT="$out/ours.iso" \
        "$bin" --ignored --exact iso_bench::write_iso_bench --nocapture --quiet 2>&1 | grep '^osimage-iso' || true
    t1=$(date +%s.%N)
    ours="$ours $(echo "$t1 - $t0" | bc)"
    rm -f "$out/xorriso.iso"; sync
    t0=$(date +%s.%N)
    xorriso -as mkisofs -quiet -R -J -V OSIMAGE_BENCH -o "$out/xorriso.iso" "$src" 2>/dev/null
    sync
    t1=$(date +%s.%N)
    theirs="$theirs $(echo "$t1 - $t0" | bc)"
done
size_o=$(stat -c %s "$out/ours.iso"); size_x=$(stat -c %s "$out/xorriso.iso")
rm -f "$out/ours.iso" "$out/xorriso.iso"
o=$(echo $ours | tr ' ' '\n' | best); x=$(echo $theirs | tr ' ' '\n' | best)
echo "tree: ${pack_mib} MiB packs + ${small} small files"
echo "osimage write_iso : ${o} s  (image ${size_o} bytes; process start + fsync included)"
echo "xorriso -as mkisofs: ${x} s  (image ${size_x} bytes; + sync)"
echo "all runs: osimage [$ours ] xorriso [$theirs ]"
