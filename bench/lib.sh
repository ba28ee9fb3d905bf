# Shared by bench/run.sh and bench/refresh.sh (sourced): timing one command and putting a
# generated section into a document. Expects `work` and `results` to be set by the caller.

die() { echo "bench: $*" >&2; exit 1; }

# timed NAME PHASE SIZE_PATH LOG COMMAND...: runs COMMAND under GNU time (output into LOG),
# then syncs, untimed; appends name, phase, wall s, CPU s, peak RSS KiB and the size of
# SIZE_PATH after the run to $results.
timed() {
    local name=$1 phase=$2 size_path=$3 log=$4
    shift 4
    local tf=$work/time.$name.$phase
    /usr/bin/time -v -o "$tf" "$@" >"$log" 2>&1 \
        || { cat "$log" "$tf" >&2; die "$name $phase failed"; }
    sync
    local wall user sys rss size
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$tf")
    user=$(awk -F': ' '/User time/ {print $2}' "$tf")
    sys=$(awk -F': ' '/System time/ {print $2}' "$tf")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    size=$(du -sb "$size_path" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$phase" "$wall" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$rss" "$size" >>"$results"
}

# synced COMMAND PATH: COMMAND, then an fsync of every file under PATH (file by file, not the
# whole filesystem, so other writers on the machine do not count): a peer's run ends when its
# output is on disk, as osimage's does (it fsyncs its own output).
synced() {
    echo "$1 && find $2 -type f -exec sync {} +"
}

# replace_section NAME SECTION DOC: puts SECTION (a file starting with the marker
# `<!-- bench:NAME:begin` and ending with `<!-- bench:NAME:end -->`) in place of DOC's section
# of that name, or at DOC's end when it has none; then prints it.
replace_section() {
    local name=$1 section=$2 doc=$3
    [ -f "$doc" ] || die "$doc missing"
    if grep -q "<!-- bench:$name:begin" "$doc"; then
        awk -v f="$section" -v b="<!-- bench:$name:begin" -v e="<!-- bench:$name:end" '
            index($0, b) == 1 { while ((getline l < f) > 0) print l; skip = 1; next }
            index($0, e) == 1 { skip = 0; next }
            !skip' "$doc" >"$doc.tmp"
        mv "$doc.tmp" "$doc"
    else
        { echo; cat "$section"; } >>"$doc"
    fi
    cat "$section"
}
