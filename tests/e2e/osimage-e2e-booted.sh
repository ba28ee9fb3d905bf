#!/bin/sh
# osimage end-to-end test: installed as /usr/local/sbin/osimage-e2e-booted in every e2e source
# system (build-source.sh, build-source-lvm.sh) and run once multi-user is reached by the
# one-shot unit osimage-e2e-booted.service, which powers the machine off afterwards.
#
# Always: one line on ttyS0,
#   OSIMAGE-E2E-BOOTED firmware=BIOS|UEFI secureboot=on|off|none machine-id=ID hostname=NAME
#       ssh=SHA256:... /=DEV [/boot=DEV] [/boot/efi=DEV] [/home=DEV]
#
# With `osimage.e2e.capture=1` on the kernel command line (tests/common/e2e/guest_capture.rs):
# the capture of the running system. The disk labelled `osimage-tools` (ext4) holds the
# osimage binary and `args` (one argument a line): both are copied into a tmpfs and the disk is
# unmounted again. capture writes system.iso into a second tmpfs; only then is the disk
# labelled `osimage-out` (ext4) mounted, and it receives system.iso and
# capture.{stdout,stderr,rc}. So no disk but the system's own is mounted while capture runs:
# a mounted disk is recorded in the image's layout even under /run (whose contents are never
# captured), and the restore would count it as one of the machine's disks. Console lines:
#   OSIMAGE-E2E-CAPTURE-STDERR <line>      each line capture wrote on its standard error
#   OSIMAGE-E2E-CAPTURED rc=N seconds=S    after the output disk is unmounted (synced)
# A failure of the harness itself (no tools disk, ...) is `OSIMAGE-E2E-CAPTURED rc=none why=...`.
MARKER=OSIMAGE-E2E-BOOTED
say() { echo "$*" >/dev/ttyS0; }

fw=BIOS
sb=none
if [ -d /sys/firmware/efi ]; then
    fw=UEFI
    sb=off
    # SecureBoot variable: 4 attribute bytes, then 1 = on (UEFI 2.10 3.3)
    v=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    [ "$(od -An -tu1 -j4 -N1 "$v" 2>/dev/null | tr -d ' ')" = 1 ] && sb=on
fi
mounts=""
while read -r dev dir rest; do
    case "$dir" in /|/boot|/boot/efi|/home) mounts="$mounts $dir=$dev" ;; esac
done </proc/mounts
# Who this machine is (issue #11: generalized restores must differ from each other).
id=$(cat /etc/machine-id 2>/dev/null || echo none)
ssh=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null | cut -d' ' -f2)
say "$MARKER firmware=$fw secureboot=$sb machine-id=$id hostname=$(hostname) ssh=${ssh:-none}$mounts"

case " $(cat /proc/cmdline) " in *" osimage.e2e.capture=1 "*) ;; *) exit 0 ;; esac

d=/run/osimage-e2e
mkdir -p "$d/tools" "$d/bin" "$d/iso" "$d/out"
mount -t tmpfs -o mode=0700 osimage-e2e-bin "$d/bin"
mount -t tmpfs -o mode=0700,size=75% osimage-e2e-iso "$d/iso"
mount -o ro LABEL=osimage-tools "$d/tools" || { say "OSIMAGE-E2E-CAPTURED rc=none why=no-tools-disk"; exit 0; }
cp "$d/tools/osimage" "$d/bin/osimage"
touch "$d/bin/args"
[ -f "$d/tools/args" ] && cp "$d/tools/args" "$d/bin/args"
umount "$d/tools"
set --
while IFS= read -r a; do set -- "$@" "$a"; done <"$d/bin/args"
t0=$(date +%s)
rc=0
"$d/bin/osimage" capture / -o "$d/iso/system.iso" "$@" \
    >"$d/bin/capture.stdout" 2>"$d/bin/capture.stderr" || rc=$?
t1=$(date +%s)
echo "$rc" >"$d/bin/capture.rc"
sed 's/^/OSIMAGE-E2E-CAPTURE-STDERR /' "$d/bin/capture.stderr" >/dev/ttyS0
mount LABEL=osimage-out "$d/out" || { say "OSIMAGE-E2E-CAPTURED rc=none why=no-output-disk"; exit 0; }
cp "$d/bin/capture.stdout" "$d/bin/capture.stderr" "$d/bin/capture.rc" "$d/out/"
if [ -f "$d/iso/system.iso" ]; then
    cp "$d/iso/system.iso" "$d/out/" || { say "OSIMAGE-E2E-CAPTURED rc=none why=output-disk-full"; exit 0; }
fi
sync
umount "$d/out" || { say "OSIMAGE-E2E-CAPTURED rc=none why=output-disk-busy"; exit 0; }
say "OSIMAGE-E2E-CAPTURED rc=$rc seconds=$((t1 - t0))"
