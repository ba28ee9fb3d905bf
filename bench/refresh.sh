#!/usr/bin/env bash
# Refresh benchmark (issue #6): on a copy of /usr, each tool makes a first backup, then a
# second one of the unchanged tree, then a third after 100 files changed; osimage with
# `capture --base` (each output a self-contained image), borg create (second and third
# archive), restic backup (second and third snapshot, parent detected), wimappend
# --update-of (second and third image). Results go into docs/PERFORMANCE.md between the
# `bench:refresh` markers.
#
#   bench/refresh.sh                      # the tree of bench/run.sh
#   BENCH_DIRS="/usr/share" bench/refresh.sh
#   BENCH_TOOLS="osimage borg" bench/refresh.sh   # a subset (osimage is always run)
#   BENCH_NO_BUILD=1 bench/refresh.sh     # use the existing target/release/osimage
#   BENCH_ISO_ROOT=/path/to/a/system bench/refresh.sh   # the ISO cases' system (see below)
#   BENCH_ISO_ROOT=none bench/refresh.sh  # no ISO cases
#
# The ISO cases (`osimage-iso`) capture a whole small system (it needs a kernel in boot/ and
# its modules) to an ISO the same three times: by default a copy of the debootstrapped e2e
# test system in tests/cache/e2e/base-* (built by the e2e tests), when it exists.
#
# Needs root, borgbackup, restic, wimtools and GNU time (bench/run.sh installs them), and
# ~5x the tree size free under bench/work (gitignored).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}
dirs=${BENCH_DIRS:-/usr/share /usr/bin /usr/lib/x86_64-linux-gnu}
tools=${BENCH_TOOLS:-osimage borg restic wim}
iso_root=${BENCH_ISO_ROOT:-$(ls -d "$repo"/tests/cache/e2e/base-*/ 2>/dev/null | head -1)}
[ "$iso_root" = none ] && iso_root=""

changed=${BENCH_CHANGED:-100}
doc=$repo/docs/PERFORMANCE.md

# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (the copy must keep owners, modes and xattrs)"
for t in wimcapture wimappend borg restic /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t missing (Debian packages: wimtools borgbackup restic time)"
done
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
osimage=$repo/target/release/osimage
[ -x "$osimage" ] || die "no release build (cargo build --release)"

# --- the tree (a fresh copy: this benchmark modifies it) -------------------------------------
tree=$work/refresh-tree
rm -rf "$tree"
mkdir -p "$tree"
echo "bench: copying $dirs into $tree" >&2
for d in $dirs; do
    mkdir -p "$tree$(dirname "$d")"
    cp -a "$d" "$tree$(dirname "$d")/"
done
# Files written moments before a base capture are read again by the next refresh (racily
# clean, docs/REFRESH.md); a real system's files are older than that.
sleep 3
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
tree_bytes=$(du -sb "$tree" | cut -f1)
tree_entries=$(find "$tree" | wc -l)

out=$work/refresh-out
results=$work/refresh-results.tsv
rm -rf "$out"
mkdir -p "$out"
: >"$results"

hot_cache() { tar -C "$tree" -cf - . | cat >/dev/null; }

# measure NAME PHASE SIZE_PATH COMMAND: with a hot page cache, `timed` (bench/lib.sh): the
# command under GNU time, then synced untimed; appends a result row.
measure() {
    local name=$1 phase=$2 size_path=$3 cmd=$4
    echo "bench: $name $phase" >&2
    hot_cache
    timed "$name" "$phase" "$size_path" "$work/log.refresh.$name.$phase" sh -c "$cmd"
}

export BORG_BASE_DIR=$work/borg-base-refresh BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$work/restic-cache-refresh
rm -rf "$BORG_BASE_DIR" "$RESTIC_CACHE_DIR"

# cmd TOOL PHASE (1 first, 2 unchanged, 3 changed): the command line.
cmd() {
    local t=$1 n=$2 prev=$(($2 - 1))
    case $t in
        osimage)
            if [ "$n" = 1 ]; then
                echo "$osimage capture $tree -o $out/osimage.$n.oimg -q"
            else
                echo "$osimage capture $tree -o $out/osimage.$n.oimg --base $out/osimage.$prev.oimg -q"
            fi ;;
        borg) echo "cd $tree && borg create --compression zstd,3 $out/borg::a$n ." ;;
        restic) echo "cd $tree && restic backup --quiet --repo $out/restic ." ;;
        wim)
            if [ "$n" = 1 ]; then
                echo "wimcapture $tree $out/image.wim r1 --unix-data --compress=XPRESS --threads=2"
            else
                echo "wimappend $tree $out/image.wim r$n --unix-data --threads=2 --update-of=$prev"
            fi ;;
        *) die "unknown tool $t (known: osimage borg restic wim)" ;;
    esac
}
size_path() {
    case $1 in
        osimage) echo "$out/osimage.$2.oimg" ;;
        borg) echo "$out/borg" ;;
        restic) echo "$out/restic" ;;
        wim) echo "$out/image.wim" ;;
    esac
}

case " $tools " in *" osimage "*) ;; *) tools="osimage $tools" ;; esac
for t in $tools; do
    case $t in
        borg) borg init -e none "$out/borg" >/dev/null ;;
        restic) restic init --quiet --repo "$out/restic" >/dev/null ;;
    esac
done
phase_name=(x first unchanged changed)
for n in 1 2; do
    for t in $tools; do
        measure "$t" "${phase_name[$n]}" "$(size_path "$t" "$n")" \
            "$(synced "$(cmd "$t" "$n")" "$(size_path "$t" "$n")")"
    done
done
# DESIGN.md, "Refresh": when writing and syncing the output bounds the time, the target is
# 1.5x of copying and syncing an image of that size. The reference: exactly that.
copy_cmd="cp $out/osimage.1.oimg $out/copy.oimg && sync $out/copy.oimg"
measure "cp+sync" "of image 1" "$out/copy.oimg" "$copy_cmd"
rm -f "$out/copy.oimg"

# change_files DIR: $changed regular files spread over DIR, 64 bytes overwritten in the
# middle of each (same size; new mtime and ctime), as an upgrade or an edit would.
change_files() {
    find "$1" -type f -size +8k -printf '%P\n' | LC_ALL=C sort \
        | awk -v want="$changed" '{ f[NR] = $0 } END { step = int(NR / want); if (step < 1) step = 1
            for (i = step; i <= NR && n < want; i += step) { print f[i]; n++ } }' >"$work/changed.list"
    [ "$(wc -l <"$work/changed.list")" = "$changed" ] || die "fewer than $changed files to change"
    while IFS= read -r f; do
        size=$(stat -c %s "$1/$f")
        head -c 64 /dev/urandom | dd of="$1/$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
    done <"$work/changed.list"
    sleep 1
}
change_files "$tree"
for t in $tools; do
    measure "$t" changed "$(size_path "$t" 3)" "$(synced "$(cmd "$t" 3)" "$(size_path "$t" 3)")"
done

# --- the ISO cases: a whole small system, captured to an ISO ------------------------------
iso_cmd() {
    local n=$1 prev=$(($1 - 1))
    if [ "$n" = 1 ]; then
        echo "$osimage capture $iso_tree -o $out/osimage.$n.iso"
    else
        echo "$osimage capture $iso_tree -o $out/osimage.$n.iso --base $out/osimage.$prev.iso"
    fi
}
if [ -n "$iso_root" ]; then
    iso_tree=$work/refresh-iso-tree
    rm -rf "$iso_tree"
    echo "bench: copying $iso_root into $iso_tree" >&2
    cp -a "$iso_root" "$iso_tree"
    sleep 3
    tree_save=$tree
    tree=$iso_tree   # hot_cache reads $tree
    for n in 1 2; do
        measure osimage-iso "${phase_name[$n]}" "$out/osimage.$n.iso" "$(iso_cmd "$n")"
    done
    measure "cp+sync-iso" "of ISO 1" "$out/copy.iso" \
        "cp $out/osimage.1.iso $out/copy.iso && sync $out/copy.iso"
    rm -f "$out/copy.iso"
    change_files "$iso_tree"
    measure osimage-iso changed "$out/osimage.3.iso" "$(iso_cmd 3)"
    tree=$tree_save
    iso_bytes=$(du -sb "$iso_tree" | cut -f1)
    iso_entries=$(find "$iso_tree" | wc -l)
fi

# --- report ------------------------------------------------------------------------------
lineage() {
    "$osimage" info "$out/osimage.$1.oimg" | sed -n 's/^refreshed from *//p' | sed 's/^[^:]*: //'
}
section=$work/refresh-section.md
{
    echo "<!-- bench:refresh:begin (generated by bench/refresh.sh; edits here are overwritten) -->"
    echo "### Latest refresh run"
    echo
    echo "- CPU: $(lscpu | awk -F': +' '/Model name/ {print $2; exit}'), $(nproc) cores;" \
        "kernel $(uname -r); $(df -T "$work" | awk 'NR == 2 {print $2}') under bench/work"
    echo "- tree: \`$dirs\` copied with \`cp -a\`: $(numfmt --to=si "$tree_bytes")B," \
        "$tree_entries entries; page cache hot before each run; $changed files changed" \
        "(64 bytes each, size kept) before the third run"
    echo "- versions: $($osimage --version), $(borg --version), $(restic version | cut -d' ' -f1-2)," \
        "$(wimcapture --version 2>&1 | head -1)"
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$repo" rev-parse --short HEAD);" \
        "load average before the run: $load_at_start, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| tool | run | wall s | CPU s | peak RSS MiB | output MB | wall ÷ its first run | wall ÷ cp+sync of its image |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        { key = $1; if ($2 == "first") first[key] = $3
          if ($1 == "cp+sync") copy["osimage"] = $3
          if ($1 == "cp+sync-iso") copy["osimage-iso"] = $3
          row[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) {
                split(row[i], f, "\t")
                # The reference copies are set against the first osimage capture of their kind.
                base = (f[1] == "cp+sync") ? first["osimage"] \
                    : (f[1] == "cp+sync-iso") ? first["osimage-iso"] : first[f[1]]
                ref = (f[1] in copy && f[2] != "first" && copy[f[1]] > 0) \
                    ? sprintf("%.2f×", f[3] / copy[f[1]]) : ""
                printf "| %s | %s | %.2f | %.2f | %.0f | %.1f | %.1f%% | %s |\n", f[1], f[2], f[3],
                    f[4], f[5] / 1024, f[6] / 1e6, 100 * f[3] / base, ref
            }
        }' <(sort -s -t$'\t' -k1,1 "$results")
    echo
    echo "References (DESIGN.md, \"Refresh\": when syncing the output bounds the time, a refresh is"
    echo "to be within 1.5× of copying and syncing an image of that size): \`cp\` of osimage's first"
    echo "image (cp+sync) and of its first ISO (cp+sync-iso), and \`sync\` of the copy."
    echo
    echo "osimage lineage: unchanged run: $(lineage 2); changed run: $(lineage 3)."
    if [ -n "$iso_root" ]; then
        echo
        echo "osimage-iso: \`$(iso_cmd 1 | sed "s|$repo/||g")\`, then \`$(iso_cmd 3 | sed "s|$repo/||g")\`"
        echo "(a copy of \`${iso_root#"$repo"/}\`: $(numfmt --to=si "$iso_bytes")B, $iso_entries entries;"
        echo "$changed files changed before the third run). Rescue environment:"
        for n in 2 3; do
            echo "run $n: $(grep -h '^rescue environment:' "$work/log.refresh.osimage-iso.${phase_name[$n]}" \
                | head -1 | sed "s|$repo/||g")"
        done
    fi
    echo
    echo "Output MB is the new image for osimage (each one self-contained) and the whole"
    echo "repository or WIM file for the others. Every run is timed until its output is on disk:"
    echo "osimage fsyncs its own, the peers' output files are fsynced inside their timed run."
    echo "Commands (run 1, then runs 2 and 3):"
    echo
    for t in $tools; do
        echo "- $t: \`$(cmd "$t" 1 | sed "s|$repo/||g")\`; \`$(cmd "$t" 3 | sed "s|$repo/||g")\`"
    done
    echo "<!-- bench:refresh:end -->"
} >"$section"

replace_section refresh "$section" "$doc"
