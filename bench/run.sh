#!/usr/bin/env bash
# Side-by-side benchmark of osimage against the peer tools, on the same tree, in one run
# (docs/DESIGN.md "The performance budget"). Results go into docs/PERFORMANCE.md between the
# `bench:run` markers; everything else in that file is left alone.
#
#   bench/run.sh                 # copy /usr/{share,bin,lib/x86_64-linux-gnu}, run every tool
#   BENCH_DIRS="/usr/share" bench/run.sh      # another source tree
#   BENCH_TOOLS="osimage squashfs" bench/run.sh   # a subset (osimage is always run)
#   BENCH_NO_APT=1 bench/run.sh  # do not call apt-get (tools already installed)
#   BENCH_NO_BUILD=1 bench/run.sh  # use the existing target/release/osimage
#   BENCH_ROUNDS=5 bench/run.sh  # rounds (default 3); each figure is the median of its rounds
#
# Needs root (the tree copy keeps owners and xattrs) and ~3x the tree size free under
# bench/work (gitignored). Wall time, CPU (user+sys) and peak RSS come from GNU time -v.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-$repo/bench/work}
dirs=${BENCH_DIRS:-/usr/share /usr/bin /usr/lib/x86_64-linux-gnu}
tools=${BENCH_TOOLS:-osimage squashfs tar-zstd wim borg restic}
rounds=${BENCH_ROUNDS:-3}
wim_compress=${WIM_COMPRESS:-XPRESS}
doc=$repo/docs/PERFORMANCE.md

# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
case $rounds in '' | *[!0-9]* | 0) die "BENCH_ROUNDS must be a positive number, not '$rounds'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (the copy must keep owners, modes and xattrs)"

# --- tools -------------------------------------------------------------------------------
need_pkgs="squashfs-tools zstd wimtools borgbackup restic time"
if [ -z "${BENCH_NO_APT:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need_pkgs >/dev/null \
        || die "apt-get install $need_pkgs failed"
fi
for t in mksquashfs unsquashfs zstd wimcapture wimapply borg restic /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t missing (Debian packages: $need_pkgs)"
done

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$repo/target/release/osimage" ] || die "no release build (cargo build --release)"
osimage=$repo/target/release/osimage

# --- the tree ----------------------------------------------------------------------------
tree=$work/tree
stamp=$work/tree.stamp
mkdir -p "$work"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$dirs" ]; then
    echo "bench: copying $dirs into $tree" >&2
    rm -rf "$tree" "$stamp"
    mkdir -p "$tree"
    for d in $dirs; do
        mkdir -p "$tree$(dirname "$d")"
        cp -a "$d" "$tree$(dirname "$d")/"
    done
    echo "$dirs" >"$stamp"
fi
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
case $load_at_start in
    0.* | 1.*) ;;
    *) echo "bench: warning: load average $load_at_start: other work will skew the figures" >&2 ;;
esac
tree_bytes=$(du -sb "$tree" | cut -f1)
tree_entries=$(find "$tree" | wc -l)

out=$work/out
x=$work/extract
results=$work/results.tsv
rm -rf "$out" "$x"
mkdir -p "$out" "$x"
: >"$results"

hot_cache() { tar -C "$tree" -cf - . | cat >/dev/null; }

# measure NAME PHASE SIZE_PATH COMMAND...: `timed` (bench/lib.sh: synced afterwards, untimed,
# so the next run does not pay for this one's writeback). For a pipeline run through sh, the
# peak RSS is that of its largest process (wait4 semantics).
measure() {
    local name=$1 phase=$2 size_path=$3
    shift 3
    echo "bench: round $round/$rounds: $name $phase" >&2
    timed "$name" "$phase" "$size_path" "$work/log.$name.$phase" "$@"
}

# Each tool: capture command, extract command, and the exact command lines for the report.
declare -A cap_cmd ext_cmd
cap_cmd[osimage]="$osimage capture $tree -o $out/osimage.oimg -q"
ext_cmd[osimage]="$osimage extract $out/osimage.oimg -C $x/osimage -q"
cap_cmd[squashfs]="mksquashfs $tree $out/squashfs.img -comp zstd -Xcompression-level 3 -processors 2 -noappend -no-progress -quiet"
ext_cmd[squashfs]="unsquashfs -d $x/squashfs -no-progress -quiet $out/squashfs.img"
cap_cmd[tar-zstd]="tar -C $tree --xattrs --acls -cf - . | zstd -3 -T0 -q -o $out/tar.tar.zst"
ext_cmd[tar-zstd]="mkdir -p $x/tar-zstd && tar -I zstd --xattrs --acls -xf $out/tar.tar.zst -C $x/tar-zstd"
cap_cmd[wim]="wimcapture $tree $out/image.wim --unix-data --compress=$wim_compress --threads=2"
ext_cmd[wim]="wimapply $out/image.wim $x/wim --unix-data"
cap_cmd[borg]="cd $tree && borg create --compression zstd,3 $out/borg::bench ."
ext_cmd[borg]="mkdir -p $x/borg && cd $x/borg && borg extract $out/borg::bench"
cap_cmd[restic]="cd $tree && restic backup --quiet --repo $out/restic ."
ext_cmd[restic]="restic restore latest --quiet --repo $out/restic --target $x/restic"
declare -A cap_size=(
    [osimage]=$out/osimage.oimg [squashfs]=$out/squashfs.img [tar-zstd]=$out/tar.tar.zst
    [wim]=$out/image.wim [borg]=$out/borg [restic]=$out/restic
)

export BORG_BASE_DIR=$work/borg-base BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$work/restic-cache

case " $tools " in *" osimage "*) ;; *) tools="osimage $tools" ;; esac
for t in $tools; do
    [ -n "${cap_cmd[$t]:-}" ] || die "unknown tool $t (known: ${!cap_cmd[*]})"
done
# Rounds are interleaved (every tool once per round), so a load that comes and goes during the
# run touches every tool alike; the report takes each tool's median.
for round in $(seq 1 "$rounds"); do
    for t in $tools; do
        rm -rf "${cap_size[$t]:?}"
        # Repositories start empty, caches cold: every tool does a first, full backup.
        case $t in
            borg) rm -rf "$BORG_BASE_DIR"; borg init -e none "$out/borg" >/dev/null ;;
            restic) rm -rf "$RESTIC_CACHE_DIR"; restic init --quiet --repo "$out/restic" >/dev/null ;;
        esac
        hot_cache
        # A capture ends when its output is on disk: osimage fsyncs its own output, so the
        # peers' outputs are fsynced inside their timed run too (file by file, not the whole
        # filesystem, so other writers on the machine do not count).
        measure "$t" capture "${cap_size[$t]}" \
            sh -c "$(synced "${cap_cmd[$t]}" "${cap_size[$t]}")"
        measure "$t" extract "$x/$t" sh -c "${ext_cmd[$t]}"
        rm -rf "${x:?}/$t"
    done
done

# --- report ------------------------------------------------------------------------------
machine() {
    echo "- CPU: $(lscpu | awk -F': +' '/Model name/ {print $2; exit}'), $(nproc) cores;" \
        "RAM $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r);" \
        "$(df -T "$work" | awk 'NR == 2 {print $2}') under bench/work"
    echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- tree: \`$dirs\` copied with \`cp -a\`: $(numfmt --to=si "$tree_bytes")B," \
        "$tree_entries entries; page cache hot (read once before each capture);" \
        "$rounds interleaved rounds, medians shown"
    echo "- versions: $($osimage --version), $(mksquashfs -version 2>&1 | head -1)," \
        "$(zstd --version | sed 's/\*\*\* //; s/, by.*//'), $(tar --version | head -1)," \
        "$(wimcapture --version 2>&1 | head -1), $(borg --version), $(restic version | cut -d' ' -f1-2)"
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$repo" rev-parse --short HEAD);" \
        "load average before the run: $load_at_start"
}

table() {
    # Rows are (tool, phase, wall, cpu, rss, size), one per round; each column's median is shown.
    awk -F'\t' -v phase="$1" -v order="$tools" '
        function median(list,   a, k, t, i, j) {
            k = split(list, a, " ")
            for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
        }
        $2 == phase { w[$1] = w[$1] " " $3; c[$1] = c[$1] " " $4; r[$1] = r[$1] " " $5; s[$1] = s[$1] " " $6
                      runs[$1] = runs[$1] " " $3 }
        END {
            n = split(order, name, " ")
            ow = median(w["osimage"]); oc = median(c["osimage"]); os = median(s["osimage"])
            if (phase == "capture")
                print "| tool | wall s | CPU s (user+sys) | peak RSS MiB | output MB | wall ÷ osimage | size ÷ osimage | wall s of each round |"
            else
                print "| tool | wall s | CPU s (user+sys) | peak RSS MiB | restored MB | wall ÷ osimage | CPU ÷ osimage | wall s of each round |"
            print "|---|---:|---:|---:|---:|---:|---:|---|"
            for (i = 1; i <= n; i++) {
                t = name[i]; wall = median(w[t]); cpu = median(c[t]); size = median(s[t])
                r2 = (phase == "capture") ? size / os : cpu / oc
                printf "| %s | %.2f | %.2f | %.0f | %.1f | %.2f | %.2f |%s |\n", t, wall, cpu,
                    median(r[t]) / 1024, size / 1e6, wall / ow, r2, runs[t]
            }
        }' "$results"
}

commands() {
    for t in $tools; do
        echo "- $t: \`${cap_cmd[$t]//$repo\//}\`; \`${ext_cmd[$t]//$repo\//}\`"
    done
}

section=$work/section.md
{
    echo "<!-- bench:run:begin (generated by bench/run.sh; edits here are overwritten) -->"
    echo "### Latest run"
    echo
    machine
    echo
    echo "Capture:"
    echo
    table capture
    echo
    echo "Extract:"
    echo
    table extract
    echo
    echo "Commands (borg: unencrypted repo, zstd,3; restic: its default, encrypted, auto"
    echo "compression; tar keeps xattrs and ACLs; each capture is timed until its output is on"
    echo "disk: the peers' output files are fsynced inside the timed run, as osimage does itself;"
    echo "extracts are not synced, for any tool):"
    echo
    commands
    echo "<!-- bench:run:end -->"
} >"$section"

replace_section run "$section" "$doc"
