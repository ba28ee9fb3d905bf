#!/bin/sh
# Issue #19's first e2e source system: Debian laid out as the Debian installer's "guided - use
# entire disk and set up LVM" does it, on ONE GPT disk (3 GiB sparse) that boots by BIOS and by
# UEFI:
#
#   p1  1 MiB    BIOS boot partition (GRUB's core.img)
#   p2  64 MiB   ESP, FAT32 (EFI/BOOT/BOOTX64.EFI: Debian's signed shim, then signed GRUB)
#   p3  300 MiB  /boot, ext4, fixed UUID and label
#   p4  rest     LVM PV (fixed PV UUID), VG `e2evg`: LV `root` (ext4, fixed UUID and label),
#                LV `swap` (128 MiB, fixed UUID), in that order (root first, as d-i does),
#                then 64 MiB left free in the VG (room for `capture --snapshot`'s snapshot LV)
#
# fstab as d-i writes it: `/dev/mapper/e2evg-root /`, `UUID=... /boot`, `UUID=... /boot/efi`,
# `/dev/mapper/e2evg-swap none swap sw`; RESUME=/dev/mapper/e2evg-swap for the initramfs, which
# activates the VG (lvm2 is in the tree). GRUB boots `root=/dev/mapper/e2evg-root`. The system
# is the plain source's (build-source.sh: same slimmed tree, same marker unit and
# osimage-e2e-booted.sh, so it prints `OSIMAGE-E2E-BOOTED ... /=/dev/mapper/e2evg-root
# /boot=/dev/vda3 /boot/efi=/dev/vda2` and powers off).
#
# This host's kernel has no device-mapper, so the disk is made INSIDE a QEMU guest (TCG)
# running the Debian kernel: the plain source disk, copied, is the installer (booted directly,
# `root=/dev/vdb3 init=/e2e-install`: no systemd, no udev); the install script (written below)
# makes the PV, VG and LVs (`DM_DISABLE_UDEV=1`, lvm without udev), the filesystems, copies its
# own root into them, runs grub-install (i386-pc, x86_64-efi --removable) and update-grub
# chrooted, prints the identifiers lvm chose (VG and LV UUIDs are random) as
# `E2E-ENV KEY=VALUE`, then `E2E-INSTALL-DONE`, and powers off. The host does what needs no
# device-mapper: it partitions the blank disk (sfdisk, fixed GUIDs), writes fstab and the
# resume device into the installer's tree and makes the initramfs there (chrooted: under TCG
# mkinitramfs alone took 10 minutes), and checks /boot and the ESP afterwards.
# Build time here: about 100 s (the guest 70 s: the copy 23 s, update-grub 24 s).
#
# Usage: build-source-lvm.sh CACHE_DIR   -> prints the directory holding the result:
#   disk.img    the 3 GiB sparse disk
#   esp/        the ESP's files as the FAT holds them (mtools)
#   source.env  the identifiers (KEY=VALUE), fixed ones and those read back from lvm
#   install.log the installer guest's console
# Idempotent: cached under CACHE_DIR/source-lvm-<hash of this script, build-source.sh and
# osimage-e2e-booted.sh> (the plain source is built first, cached as build-source.sh does).
# Needs root, what build-source.sh needs, and qemu-system-x86_64.
set -eu

cache=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/build-source-lvm.sh" "$here/build-source.sh" "$here/osimage-e2e-booted.sh" |
    sha256sum | cut -c1-16)
out="$cache/source-lvm-$key"

log() { echo "build-source-lvm: $*" >&2; }

# The plain source first (it takes the lock itself).
plain=$(sh "$here/build-source.sh" "$cache")

exec 9>"$cache/.lock-lvm"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

# --- fixed identifiers -----------------------------------------------------------------------
DISK_GUID=E2E1D15C-0000-4000-8000-000000000000
BIOS_PARTUUID=E2E1D15C-0000-4000-8000-000000000001
ESP_PARTUUID=E2E1D15C-0000-4000-8000-000000000002
BOOT_PARTUUID=E2E1D15C-0000-4000-8000-000000000003
PV_PARTUUID=E2E1D15C-0000-4000-8000-000000000004
ESP_VOLID=E2E10002          # shown as E2E1-0002
ESP_LABEL=E2EESP
BOOT_UUID=e2e1b007-0000-4000-8000-000000000003
BOOT_LABEL=e2e-boot
PV_UUID=E2E1PV-0000-4000-8000-0000-0000-000004
VG=e2evg
ROOT_UUID=e2e1f5e5-0000-4000-8000-000000000005
ROOT_LABEL=e2e-root
SWAP_UUID=e2e15a90-0000-4000-8000-000000000006
SWAP_EXTENTS=32             # 128 MiB in 4 MiB extents (vgcreate's default extent size)
FREE_EXTENTS=16             # 64 MiB the VG keeps free
DISK_BYTES=$((3 * 1024 * 1024 * 1024))
INSTALL_TIMEOUT=1800
RELEASE=$(sed -n 's/^RELEASE=//p' "$plain/source.env")
MARKER=$(sed -n 's/^MARKER=//p' "$plain/source.env")

work="$cache/build-lvm.tmp"
mnt="$work/mnt"
loop=""
cleanup() {
    for m in "$mnt/sys" "$mnt/proc" "$mnt/dev" "$mnt"; do
        if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m"; fi
    done
    if [ -n "$loop" ]; then
        partx -d "$loop" 2>/dev/null || true
        losetup -d "$loop" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if grep -q " $work" /proc/self/mounts; then log "$work still has mounts; refusing to clean it"; exit 1; fi
rm -rf --one-file-system "$work"
mkdir -p "$work/mnt" "$work/esp"
t0=$(date +%s)

# --- the blank target disk, partitioned here ---------------------------------------------------
disk="$work/disk.img"
truncate -s "$DISK_BYTES" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $DISK_GUID
first-lba: 2048
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=$BIOS_PARTUUID, name="bios-boot"
start=4096, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="esp"
start=135168, size=614400, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$BOOT_PARTUUID, name="boot"
start=749568, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, uuid=$PV_PARTUUID, name="lvm"
EOF

# --- the installer: a copy of the plain source disk with the install script on its root -------
inst="$work/installer.img"
cp --sparse=always --reflink=auto "$plain/disk.img" "$inst"
loop=$(losetup -f --show "$inst")
partx -a "$loop"
[ -b "${loop}p3" ] || mknod "${loop}p3" b $(tr ':' ' ' <"/sys/block/${loop#/dev/}/${loop#/dev/}p3/dev")
mount "${loop}p3" "$mnt"
kver=$(ls "$mnt/usr/lib/modules")
cp "$mnt/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$mnt/boot/initrd.img-$kver" "$work/initrd.img"
esp_uuid=$(echo "$ESP_VOLID" | sed 's/^\(....\)/\1-/')

# The system's configuration, written here into the tree the guest copies: fstab as d-i
# writes it, the resume device; then the initramfs, made chrooted HERE (under TCG the
# fork-heavy mkinitramfs took 10 of the guest's 13 minutes). lvm2's hook is unconditional
# (lvm, dmsetup, the dm modules, 69-lvm.rules: udev activates the VG at boot), so nothing in
# it depends on the LVs existing; the resume hook warns that the swap LV is not here and
# keeps RESUME= (conf.d is copied as it is). The installer boots the initramfs copied above.
cat >"$mnt/etc/fstab" <<EOF
# /etc/fstab: static file system information (as the Debian installer writes it).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/mapper/$VG-root /               ext4    errors=remount-ro 0       1
# /boot was on /dev/vda3 during installation
UUID=$BOOT_UUID /boot           ext4    defaults        0       2
# /boot/efi was on /dev/vda2 during installation
UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1
/dev/mapper/$VG-swap none            swap    sw              0       0
EOF
echo "RESUME=/dev/mapper/$VG-swap" >"$mnt/etc/initramfs-tools/conf.d/resume"
mount -t tmpfs -o mode=0755 e2e-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$mnt/dev/"
mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
chroot "$mnt" update-initramfs -u -k all >&2
chroot "$mnt" lsinitramfs "/boot/initrd.img-$kver" >"$work/initrd.list"
grep -q 'sbin/lvm$' "$work/initrd.list" || { log "the initramfs has no lvm"; exit 1; }
umount "$mnt/sys" "$mnt/proc" "$mnt/dev"

cat >"$mnt/e2e-install.env" <<EOF
VG=$VG
PV_UUID=$PV_UUID
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
SWAP_UUID=$SWAP_UUID
SWAP_EXTENTS=$SWAP_EXTENTS
FREE_EXTENTS=$FREE_EXTENTS
BOOT_UUID=$BOOT_UUID
BOOT_LABEL=$BOOT_LABEL
ESP_VOLID=$ESP_VOLID
ESP_UUID=$esp_uuid
ESP_LABEL=$ESP_LABEL
EOF
cat >"$mnt/e2e-install" <<'SCRIPT'
#!/bin/sh
# PID 1 of the installer guest (build-source-lvm.sh): target /dev/vda, this root /dev/vdb3.
PS4='e2e-install+ '
set -eux
step() { set +x; echo "e2e-install: $* at $(cut -d' ' -f1 /proc/uptime) s"; set -x; }
. /e2e-install.env
off() { sync; echo 1 >/proc/sys/kernel/sysrq; echo o >/proc/sysrq-trigger; sleep 60; }
trap 'set +x; echo "E2E-INSTALL-FAILED (the last command above)"; off' EXIT
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /run/lvm
# No udev here: libdevmapper makes the /dev/mapper nodes itself, lvm scans /dev.
export DM_DISABLE_UDEV=1
lvmc='devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" } activation { udev_sync = 0 udev_rules = 0 }'
modprobe dm_mod
modprobe vfat
for n in 1 2 3 4; do [ -b /dev/vda$n ]; done

step "the LVM stack"
pvcreate --config "$lvmc" -y --uuid "$PV_UUID" --norestorefile /dev/vda4
vgcreate --config "$lvmc" "$VG" /dev/vda4
free=$(vgs --config "$lvmc" --noheadings -o vg_free_count "$VG" | tr -d ' ')
lvcreate --config "$lvmc" -y -Wy -Zy -n root -l $((free - SWAP_EXTENTS - FREE_EXTENTS)) "$VG"
lvcreate --config "$lvmc" -y -Wy -Zy -n swap -l "$SWAP_EXTENTS" "$VG"
[ -b "/dev/mapper/$VG-root" ] && [ -b "/dev/mapper/$VG-swap" ]

step "the filesystems"
mkfs.ext4 -q -F -U "$ROOT_UUID" -L "$ROOT_LABEL" "/dev/mapper/$VG-root"
mkswap -U "$SWAP_UUID" "/dev/mapper/$VG-swap"
mkfs.ext4 -q -F -U "$BOOT_UUID" -L "$BOOT_LABEL" /dev/vda3
mkfs.vfat -F 32 -s 1 -i "$ESP_VOLID" -n "$ESP_LABEL" /dev/vda2

t=/target
mkdir -p $t
mount "/dev/mapper/$VG-root" $t
mkdir $t/boot
mount /dev/vda3 $t/boot
step "copying the system"
set +x
tar -C / --one-file-system --xattrs --xattrs-include='*' --acls \
    --exclude=./target --exclude=./e2e-install --exclude=./e2e-install.env --exclude=./lost+found \
    -cpf - . | tar -C $t --xattrs --xattrs-include='*' --acls --numeric-owner -xpf -
step "copied"
rm -rf $t/boot/efi && mkdir $t/boot/efi
mount -t vfat /dev/vda2 $t/boot/efi

mount --bind /dev $t/dev
mount -t proc proc $t/proc
mount -t sysfs sysfs $t/sys
mount -t tmpfs -o mode=0755 tmpfs $t/run
mkdir -p $t/run/lock $t/run/lvm
step "grub-install (BIOS)"
chroot $t grub-install --target=i386-pc /dev/vda
step "grub-install (EFI)"
chroot $t grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram --uefi-secure-boot
step "update-grub"
chroot $t update-grub
step "checks"
grep -q "root=/dev/mapper/$VG-root" $t/boot/grub/grub.cfg
cmp $t/boot/efi/EFI/BOOT/BOOTX64.EFI $t/usr/lib/shim/shimx64.efi.signed
# The vendor directory an installed Debian also has (as build-source.sh: no fbx64.efi).
mkdir -p $t/boot/efi/EFI/debian
cp $t/boot/efi/EFI/BOOT/BOOTX64.EFI $t/boot/efi/EFI/debian/shimx64.efi
cp $t/boot/efi/EFI/BOOT/grubx64.efi $t/boot/efi/EFI/BOOT/mmx64.efi $t/boot/efi/EFI/BOOT/grub.cfg $t/boot/efi/EFI/debian/

set +x
echo "E2E-ENV VG_UUID=$(vgs --config "$lvmc" --noheadings -o vg_uuid "$VG" | tr -d ' ')"
echo "E2E-ENV ROOT_LV_UUID=$(lvs --config "$lvmc" --noheadings -o lv_uuid "$VG/root" | tr -d ' ')"
echo "E2E-ENV SWAP_LV_UUID=$(lvs --config "$lvmc" --noheadings -o lv_uuid "$VG/swap" | tr -d ' ')"
echo "E2E-ENV PE_START=$(pvs --config "$lvmc" --noheadings --units s --nosuffix -o pe_start /dev/vda4 | tr -d ' ')"
echo "E2E-ENV EXTENT_BYTES=$(vgs --config "$lvmc" --noheadings --units b --nosuffix -o vg_extent_size "$VG" | tr -d ' ')"
echo "E2E-ENV ROOT_EXTENTS=$(lvs --config "$lvmc" --noheadings -o seg_size_pe "$VG/root" | tr -d ' ')"
set -x
umount $t/run $t/sys $t/proc $t/dev $t/boot/efi $t/boot $t
vgchange --config "$lvmc" -an "$VG"
sync
trap - EXIT
step "done"
set +x
echo "E2E-INSTALL-DONE"
off
SCRIPT
chmod 755 "$mnt/e2e-install"
umount "$mnt"
partx -d "$loop"
losetup -d "$loop"
loop=""

# --- the install, in a guest -----------------------------------------------------------------------
log "installing in a QEMU guest (TCG; console: $work/install.log)"
t1=$(date +%s)
# RDRAND and a virtio RNG: the guest's random pool is ready early (why: src/bootcheck/vm.rs, args)
timeout "$INSTALL_TIMEOUT" qemu-system-x86_64 -machine pc,accel=tcg -cpu qemu64,+rdrand -m 1536M -smp 2 \
    -device virtio-rng-pci -nic none -no-reboot -display none -monitor none -serial "file:$work/install.log" \
    -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
    -append "root=/dev/vdb3 rw init=/e2e-install console=ttyS0,115200 panic=1 quiet modprobe.blacklist=floppy" \
    -drive "file=$disk,if=virtio,format=raw" \
    -drive "file=$inst,if=virtio,format=raw" 2>"$work/qemu.stderr" || {
    tail -n 40 "$work/install.log" >&2; cat "$work/qemu.stderr" >&2
    log "the installer guest failed or timed out (${INSTALL_TIMEOUT}s)"; exit 1; }
log "installer guest took $(( $(date +%s) - t1 )) s"
grep -q '^E2E-INSTALL-DONE' "$work/install.log" || {
    tail -n 40 "$work/install.log" >&2
    log "the installer guest stopped without E2E-INSTALL-DONE (console: $work/install.log)"; exit 1; }
rm -f "$inst" "$work/vmlinuz" "$work/initrd.img"

# --- checks from the host: /boot's GRUB config and kernel, the ESP's files ---------------------------
loop=$(losetup -r -f --show "$disk")
partx -a "$loop"
[ -b "${loop}p3" ] || mknod "${loop}p3" b $(tr ':' ' ' <"/sys/block/${loop#/dev/}/${loop#/dev/}p3/dev")
mount -o ro,noload "${loop}p3" "$mnt"
grep -q "root=/dev/mapper/$VG-root" "$mnt/grub/grub.cfg" || { log "/boot/grub/grub.cfg does not boot root=/dev/mapper/$VG-root"; exit 1; }
[ -f "$mnt/vmlinuz-$kver" ] && [ -f "$mnt/initrd.img-$kver" ] || { log "/boot holds no kernel $kver"; exit 1; }
umount "$mnt"
partx -d "$loop"
losetup -d "$loop"
loop=""
export MTOOLS_SKIP_CHECK=1
mcopy -s -m -n -i "$disk@@$((4096 * 512))" ::/EFI "$work/esp/"
[ -f "$work/esp/EFI/BOOT/BOOTX64.EFI" ] || { log "the ESP has no EFI/BOOT/BOOTX64.EFI"; exit 1; }

{
    cat <<EOF
RELEASE=$RELEASE
DISK_GUID=$DISK_GUID
BIOS_PARTUUID=$BIOS_PARTUUID
ESP_PARTUUID=$ESP_PARTUUID
BOOT_PARTUUID=$BOOT_PARTUUID
PV_PARTUUID=$PV_PARTUUID
ESP_UUID=$esp_uuid
ESP_LABEL=$ESP_LABEL
BOOT_UUID=$BOOT_UUID
BOOT_LABEL=$BOOT_LABEL
PV_UUID=$PV_UUID
VG_NAME=$VG
ROOT_LV=root
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
SWAP_LV=swap
SWAP_UUID=$SWAP_UUID
ROOT_DEV=/dev/mapper/$VG-root
SWAP_DEV=/dev/mapper/$VG-swap
FREE_EXTENTS=$FREE_EXTENTS
MARKER=$MARKER
KERNEL_PART=3
KERNEL_DIR=.
ROOT_ARG=/dev/mapper/$VG-root
EOF
    sed -n 's/^E2E-ENV \([A-Z_]*=[A-Za-z0-9-]*\)\r*$/\1/p' "$work/install.log"
} >"$work/source.env"
for k in VG_UUID ROOT_LV_UUID SWAP_LV_UUID PE_START EXTENT_BYTES ROOT_EXTENTS; do
    grep -q "^$k=." "$work/source.env" || { log "the installer did not report $k"; exit 1; }
done
rmdir "$work/mnt"
touch "$work/done"
for old in "$cache"/source-lvm-*; do
    [ -d "$old" ] && rm -rf --one-file-system "$old"
done
mv "$work" "$out"
log "disk built in $(( $(date +%s) - t0 )) s: $out"
echo "$out"
