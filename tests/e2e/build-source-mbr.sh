#!/bin/sh
# The MBR source system (tests/e2e_mbr.rs, issue #24 item 22): the same Debian as
# build-source.sh's, on ONE disk with a DOS partition table, booting by BIOS only, the way
# older servers and many VM templates are installed:
#
#   p1  primary, bootable  1600 MiB  root, ext4 (fixed UUID and label)
#   p2  extended           the rest, holding two logical partitions:
#   p5  logical            128 MiB   /home, ext4 (fixed UUID and label, a few files)
#   p6  logical            64 MiB    swap (fixed UUID and label)
#
# GRUB's core.img sits in the gap between the MBR and p1 (no BIOS boot partition on a DOS
# disk), so the restore must bring back MBR bytes 0-439, the gap and the EBR chain exactly for
# the disk to boot. fstab mounts /, /home and the swap by UUID; the marker unit is the source's.
#
# Usage: build-source-mbr.sh CACHE_DIR -> prints the directory holding disk.img (2 GiB
# sparse), esp/ (empty: no ESP) and source.env. Builds (or finds) build-source.sh's source
# first and copies its root tree; cached as CACHE_DIR/source-mbr-<hash of this script and of
# that source's directory name>, so a change to either rebuilds it.
# Needs root, sfdisk, losetup, partx, mkfs.ext4, mkswap.
set -eu

cache=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# before our own lock: build-source.sh takes CACHE_DIR/.lock itself
gpt=$(sh "$here/build-source.sh" "$cache")
key=$( (cat "$here/build-source-mbr.sh"; basename "$gpt") | sha256sum | cut -c1-16)
out="$cache/source-mbr-$key"

exec 9>"$cache/.lock-mbr"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

log() { echo "build-source-mbr: $*" >&2; }

DISK_SIGNATURE=0x0e2e0d15
ROOT_UUID=e2e0f5e5-0000-4000-8000-00000000b001
ROOT_LABEL=e2e-mbr-root
HOME_UUID=e2e0f5e5-0000-4000-8000-00000000b005
HOME_LABEL=e2e-home
SWAP_UUID=e2e0f5e5-0000-4000-8000-00000000b006
SWAP_LABEL=e2e-swap
DISK_BYTES=$((2 * 1024 * 1024 * 1024))
MARKER=$(sed -n 's/^MARKER=//p' "$gpt/source.env")

work="$cache/.source-mbr-build"
loop=""
gloop=""
cleanup() {
    for m in "$work/mnt/home" "$work/mnt/dev" "$work/mnt/proc" "$work/mnt/sys" "$work/mnt" "$work/src"; do
        mountpoint -q "$m" 2>/dev/null && umount "$m"
    done
    [ -n "$loop" ] && { partx -d "$loop" 2>/dev/null; losetup -d "$loop"; }
    [ -n "$gloop" ] && { partx -d "$gloop" 2>/dev/null; losetup -d "$gloop"; }
    return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM
rm -rf --one-file-system "$work"
mkdir -p "$work/mnt" "$work/src" "$work/esp"
t0=$(date +%s)

# nodes for a loop device's partitions (no udev: make them if devtmpfs did not)
nodes() {
    dev=$1
    shift
    for n in "$@"; do
        [ -b "${dev}p$n" ] || mknod "${dev}p$n" b $(tr ':' ' ' <"/sys/block/${dev#/dev/}/${dev#/dev/}p$n/dev")
    done
}

disk="$work/disk.img"
truncate -s "$DISK_BYTES" "$disk"
# 1 MiB (2048 sectors) of gap before p1: room for GRUB's core.img
sfdisk --quiet "$disk" <<EOF
label: dos
label-id: $DISK_SIGNATURE
start=2048, size=$((1600 * 2048)), type=83, bootable
start=$((2048 + 1600 * 2048)), type=5
size=$((128 * 2048)), type=83
size=$((64 * 2048)), type=82
EOF
loop=$(losetup -f --show "$disk")
partx -a "$loop"
nodes "$loop" 1 5 6
mkfs.ext4 -q -F -U "$ROOT_UUID" -L "$ROOT_LABEL" "${loop}p1"
mkdir -p "$work/home/e2e"
printf 'a file on a logical partition\n' >"$work/home/e2e/notes.txt"
head -c 300000 /dev/urandom >"$work/home/e2e/random.bin"
mkfs.ext4 -q -F -U "$HOME_UUID" -L "$HOME_LABEL" -d "$work/home" "${loop}p5"
mkswap -q -U "$SWAP_UUID" -L "$SWAP_LABEL" "${loop}p6" >/dev/null

# the root tree: build-source.sh's, read-only from its disk
gloop=$(losetup -f --show -r "$gpt/disk.img")
partx -a "$gloop" 2>/dev/null || true
nodes "$gloop" 3
mount -o ro "${gloop}p3" "$work/src"
mnt="$work/mnt"
mount "${loop}p1" "$mnt"
cp -a "$work/src/." "$mnt/"
umount "$work/src"
partx -d "$gloop" 2>/dev/null || true
losetup -d "$gloop"
gloop=""

cat >"$mnt/etc/fstab" <<EOF
# <file system>          <mount point>  <type>  <options>          <dump> <pass>
UUID=$ROOT_UUID  /      ext4  errors=remount-ro  0 1
UUID=$HOME_UUID  /home  ext4  defaults           0 2
UUID=$SWAP_UUID  none   swap  sw                 0 0
EOF
rmdir "$mnt/boot/efi" 2>/dev/null || true

# GRUB for BIOS on a DOS disk: core.img in the post-MBR gap, grub.cfg booting root=UUID.
# The chroot's /dev is a tmpfs with the nodes GRUB needs (see build-source.sh).
mount -t tmpfs -o mode=0755 e2e-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$loop" "${loop}p1" "${loop}p5" "${loop}p6" "$mnt/dev/"
mkdir -p "$mnt/dev/disk/by-uuid"
ln -s "../../${loop#/dev/}p1" "$mnt/dev/disk/by-uuid/$ROOT_UUID"
mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
chroot "$mnt" grub-install --target=i386-pc "$loop" >&2
chroot "$mnt" update-grub >&2
grep -q "root=UUID=$ROOT_UUID" "$mnt/boot/grub/grub.cfg" || { log "grub.cfg does not boot root=UUID=$ROOT_UUID"; exit 1; }
grep -q "part_msdos" "$mnt/boot/grub/grub.cfg" || { log "grub.cfg does not load part_msdos"; exit 1; }
umount "$mnt/sys" "$mnt/proc" "$mnt/dev"
umount "$mnt"
# the boot code and the gap must now hold GRUB's boot.img and core.img
dd if="$disk" bs=440 count=1 status=none | grep -qa GRUB || { log "no GRUB boot code in the MBR"; exit 1; }
[ "$(dd if="$disk" bs=512 skip=1 count=2047 status=none | tr -d '\000' | wc -c)" -gt 10000 ] ||
    { log "no core.img in the gap after the MBR"; exit 1; }
partx -d "$loop"
losetup -d "$loop"
loop=""

cat >"$work/source.env" <<EOF
DISK_SIGNATURE=$DISK_SIGNATURE
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
HOME_UUID=$HOME_UUID
HOME_LABEL=$HOME_LABEL
SWAP_UUID=$SWAP_UUID
SWAP_LABEL=$SWAP_LABEL
MARKER=$MARKER
BOOT_MOUNTS=/=/dev/vda1 /home=/dev/vda5
KERNEL_PART=1
KERNEL_DIR=boot
ROOT_ARG=UUID=$ROOT_UUID
EOF
touch "$work/done"
for old in "$cache"/source-mbr-*; do
    [ -d "$old" ] && rm -rf --one-file-system "$old"
done
mv "$work" "$out"
log "disk built in $(( $(date +%s) - t0 )) s: $out"
echo "$out"
