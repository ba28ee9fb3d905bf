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

# start_garage GARAGE DIR: a single-node Garage on free loopback ports with its data, config and
# log in DIR, the bucket `bench` made by its --default-bucket for a random key; exports the
# AWS_* variables osimage (and restic) take, sets garage_pid and kills the server on exit.
start_garage() {
    local garage=$1 dir=$2
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    rpc=$(port) s3=$(port) admin=$(port)
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/garage/meta"
data_dir = "$dir/garage/data"
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
        "$garage" -c "$dir/garage.toml" server --single-node --default-bucket \
        >"$dir/garage.log" 2>&1 &
    garage_pid=$!
    trap 'kill $garage_pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        "$garage" -c "$dir/garage.toml" bucket info bench >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$garage" -c "$dir/garage.toml" bucket info bench >/dev/null 2>&1 \
        || { tail -20 "$dir/garage.log" >&2; die "Garage did not come up"; }
}
