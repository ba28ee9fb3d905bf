#!/bin/sh
# Issue #19's e2e source systems: Debian laid out as the Debian installer's stacked layouts make
# it, built INSIDE a QEMU guest (this host's kernel has no device-mapper and no MD). LAYOUT:
#
# lvm    "guided - use entire disk and set up LVM", ONE GPT disk (3 GiB sparse), BIOS and UEFI:
#   p1  1 MiB    BIOS boot partition (GRUB's core.img)
#   p2  64 MiB   ESP, FAT32 (EFI/BOOT/BOOTX64.EFI: Debian's signed shim, then signed GRUB)
#   p3  300 MiB  /boot, ext4, fixed UUID and label
#   p4  rest     LVM PV (fixed PV UUID), VG `e2evg`: LV `root` (ext4, fixed UUID and label),
#                LV `swap` (128 MiB, fixed UUID), in that order (root first, as d-i does),
#                then 64 MiB left free in the VG (room for `capture --snapshot`'s snapshot LV)
#   fstab as d-i writes it: `/dev/mapper/e2evg-root /`, `UUID=... /boot`, `UUID=... /boot/efi`,
#   `/dev/mapper/e2evg-swap none swap sw`; RESUME=/dev/mapper/e2evg-swap for the initramfs,
#   which activates the VG (lvm2 is in the tree). GRUB boots `root=/dev/mapper/e2evg-root`.
#
# md     MD RAID1 on TWO GPT disks (2 GiB sparse each: disk.img and disk-b.img), BIOS only:
#   p1  1 MiB    BIOS boot partition (GRUB's core.img: grub-install on BOTH disks)
#   p2  rest     Linux RAID member of /dev/md0: metadata 1.2, raid1, fixed array UUID, name
#                `osimage-e2e:0` (d-i's HOST:N); ext4 / directly on md0 (fixed UUID, label)
#   fstab `UUID=... /`; /etc/mdadm/mdadm.conf holds the ARRAY line (written before the
#   initramfs is made: mdadm's hook copies it, and the initramfs assembles md0 by it, degraded
#   after a timeout when a member is missing). GRUB boots `root=UUID=...`. The members are
#   created `--assume-clean`: both are zeroed sparse files, already in sync (no resync under
#   TCG).
#
# crypt  "guided - use entire disk and set up encrypted LVM", ONE GPT disk (3 GiB sparse), BIOS
#   and UEFI: p1-p3 as lvm (its own ids), p4 LUKS2 (fixed UUID, passphrase CRYPT_PASSPHRASE
#   in source.env, PBKDF argon2id with fixed small costs: TCG unlocks it in seconds) opened as
#   `vda4_crypt` (d-i's `<part>_crypt`), holding the PV of VG `e2ecvg` (LVs `root`, `swap`).
#   /etc/crypttab `vda4_crypt UUID=... none luks,discard,initramfs` (`initramfs`: the hook
#   runs on the host, where it cannot see that / is on it), fstab as lvm's. GRUB boots
#   `root=/dev/mapper/e2ecvg-root`; the initramfs asks for the passphrase on the console.
#
# The system is the plain source's (build-source.sh: same slimmed tree, same marker unit and
# osimage-e2e-booted.sh, so it prints `OSIMAGE-E2E-BOOTED ... /=DEV ...` and powers off).
#
# The plain source disk, copied, is the installer (booted directly, `root=/dev/vd?3
# init=/e2e-install`: no systemd, no udev; the target disks come first, /dev/vda [vdb]); the
# install script (written below) makes the stack (`DM_DISABLE_UDEV=1`, lvm without udev,
# `MDADM_NO_UDEV=1`), the filesystems, copies its own root into them, runs grub-install
# (i386-pc; x86_64-efi --removable where there is an ESP) and update-grub chrooted, prints the
# identifiers the tools chose (VG and LV UUIDs are random, the MD data offset) as
# `E2E-ENV KEY=VALUE`, then `E2E-INSTALL-DONE`, and powers off. The host does what needs no
# device-mapper: it partitions the blank disks (sfdisk, fixed GUIDs), writes fstab (and
# mdadm.conf, crypttab) into the installer's tree and makes the initramfs there (chrooted:
# under TCG mkinitramfs alone took 10 minutes), and checks /boot and the ESP afterwards.
# Build time here: about 100 s for lvm (the guest 70 s: the copy 23 s, update-grub 24 s).
#
# Usage: build-source-stack.sh LAYOUT CACHE_DIR   -> prints the directory holding the result:
#   disk.img    the (first) disk; md: disk-b.img the second
#   esp/        the ESP's files as the FAT holds them (mtools; lvm, crypt)
#   source.env  the identifiers (KEY=VALUE), fixed ones and those read back in the guest;
#               DISKS names the disk files in order, KERNEL_PART/KERNEL_DIR/KERNEL_OFFSET
#               where the kernel is (KERNEL_OFFSET: bytes into that partition where its
#               filesystem starts, the MD data offset), ROOT_ARG what root= boots it
#   install.log the installer guest's console
# Idempotent: cached under CACHE_DIR/source-LAYOUT-<hash of LAYOUT, this script,
# build-source.sh and osimage-e2e-booted.sh> (the plain source is built first, cached as
# build-source.sh does).
# Needs root, what build-source.sh needs, and qemu-system-x86_64.
set -eu

case "${1:-}" in lvm|md|crypt) layout=$1 ;; *) echo "usage: $0 lvm|md|crypt CACHE_DIR" >&2; exit 2 ;; esac
cache=$(mkdir -p "$2" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
key=$( (echo "$layout"; cat "$here/build-source-stack.sh" "$here/build-source.sh" "$here/osimage-e2e-booted.sh") |
    sha256sum | cut -c1-16)
out="$cache/source-$layout-$key"

log() { echo "build-source-stack($layout): $*" >&2; }

# The plain source first (it takes the lock itself).
plain=$(sh "$here/build-source.sh" "$cache")

exec 9>"$cache/.lock-$layout"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

# --- fixed identifiers -----------------------------------------------------------------------
INSTALL_TIMEOUT=1800
RELEASE=$(sed -n 's/^RELEASE=//p' "$plain/source.env")
MARKER=$(sed -n 's/^MARKER=//p' "$plain/source.env")
BIOS_TYPE=21686148-6449-6E6F-744E-656564454649
ESP_TYPE=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
LINUX_TYPE=0FC63DAF-8483-4772-8E79-3D69D8477DE4
case $layout in
lvm)
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
    PV_TYPE=E6D6D379-F507-44C2-A23C-238F2A3DF928
    ;;
crypt)
    DISK_GUID=E2E3D15C-0000-4000-8000-000000000000
    BIOS_PARTUUID=E2E3D15C-0000-4000-8000-000000000001
    ESP_PARTUUID=E2E3D15C-0000-4000-8000-000000000002
    BOOT_PARTUUID=E2E3D15C-0000-4000-8000-000000000003
    PV_PARTUUID=E2E3D15C-0000-4000-8000-000000000004
    ESP_VOLID=E2E30002          # shown as E2E3-0002
    ESP_LABEL=E2EESP
    BOOT_UUID=e2e3b007-0000-4000-8000-000000000003
    BOOT_LABEL=e2e-boot
    LUKS_UUID=e2e3c4e7-0000-4000-8000-000000000004
    CRYPT_NAME=vda4_crypt       # d-i: <partition>_crypt
    CRYPT_PASSPHRASE="e2e osimage luks passphrase"
    PV_UUID=E2E3PV-0000-4000-8000-0000-0000-000004
    VG=e2ecvg
    ROOT_UUID=e2e3f5e5-0000-4000-8000-000000000005
    ROOT_LABEL=e2e-root
    SWAP_UUID=e2e35a90-0000-4000-8000-000000000006
    SWAP_EXTENTS=32
    FREE_EXTENTS=0
    DISK_BYTES=$((3 * 1024 * 1024 * 1024))
    PV_TYPE=$LINUX_TYPE         # d-i marks the encrypted partition plain Linux
    ;;
md)
    DISK_GUID=E2E2D15C-0000-4000-8000-0000000a0000
    BIOS_PARTUUID=E2E2D15C-0000-4000-8000-0000000a0001
    MD_PARTUUID=E2E2D15C-0000-4000-8000-0000000a0002
    DISK_B_GUID=E2E2D15C-0000-4000-8000-0000000b0000
    BIOS_B_PARTUUID=E2E2D15C-0000-4000-8000-0000000b0001
    MD_B_PARTUUID=E2E2D15C-0000-4000-8000-0000000b0002
    MD_UUID=e2e2a0a0:00004000:80000000:00000007
    MD_NAME=osimage-e2e:0
    ROOT_UUID=e2e2f5e5-0000-4000-8000-000000000005
    ROOT_LABEL=e2e-root
    DISK_BYTES=$((2 * 1024 * 1024 * 1024))
    RAID_TYPE=A19D880F-05FC-4D3B-A006-743F0F84911E
    ;;
esac

work="$cache/build-$layout.tmp"
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

# --- the blank target disk(s), partitioned here ------------------------------------------------
disk="$work/disk.img"
truncate -s "$DISK_BYTES" "$disk"
targets="-drive file=$disk,if=virtio,format=raw"
case $layout in
lvm|crypt)
    DISKS=disk.img
    sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $DISK_GUID
first-lba: 2048
start=2048, size=2048, type=$BIOS_TYPE, uuid=$BIOS_PARTUUID, name="bios-boot"
start=4096, size=131072, type=$ESP_TYPE, uuid=$ESP_PARTUUID, name="esp"
start=135168, size=614400, type=$LINUX_TYPE, uuid=$BOOT_PARTUUID, name="boot"
start=749568, type=$PV_TYPE, uuid=$PV_PARTUUID, name="$layout"
EOF
    inst_root=/dev/vdb3
    ;;
md)
    DISKS="disk.img disk-b.img"
    disk_b="$work/disk-b.img"
    truncate -s "$DISK_BYTES" "$disk_b"
    targets="$targets -drive file=$disk_b,if=virtio,format=raw"
    for d in a b; do
        if [ $d = a ]; then f=$disk; g=$DISK_GUID; b=$BIOS_PARTUUID; m=$MD_PARTUUID
        else f=$disk_b; g=$DISK_B_GUID; b=$BIOS_B_PARTUUID; m=$MD_B_PARTUUID; fi
        sfdisk --quiet "$f" <<EOF
label: gpt
label-id: $g
first-lba: 2048
start=2048, size=2048, type=$BIOS_TYPE, uuid=$b, name="bios-boot"
start=4096, type=$RAID_TYPE, uuid=$m, name="raid"
EOF
    done
    inst_root=/dev/vdc3
    ;;
esac

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
esp_uuid=$(echo "${ESP_VOLID:-}" | sed 's/^\(....\)/\1-/')

# The system's configuration, written here into the tree the guest copies (fstab as d-i
# writes it, the resume device, mdadm.conf, crypttab); then the initramfs, made chrooted HERE
# (under TCG the fork-heavy mkinitramfs took 10 of the guest's 13 minutes). lvm2's hook is
# unconditional (lvm, dmsetup, the dm modules, 69-lvm.rules: udev activates the VG at boot),
# so nothing in it depends on the LVs existing; the resume hook warns that the swap LV is not
# here and keeps RESUME= (conf.d is copied as it is). mdadm's hook copies mdadm.conf (its
# ARRAY line names md0) and the raid modules; cryptroot's takes the crypttab entries marked
# `initramfs` (it cannot see / on the mapping here), cryptsetup and the crypto modules. The
# installer boots the initramfs copied above.
case $layout in
lvm|crypt)
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
    ;;
md)
    cat >"$mnt/etc/fstab" <<EOF
# /etc/fstab: static file system information (as the Debian installer writes it).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/md0 during installation
UUID=$ROOT_UUID /               ext4    errors=remount-ro 0       1
EOF
    mkdir -p "$mnt/etc/mdadm"
    cat >"$mnt/etc/mdadm/mdadm.conf" <<EOF
# mdadm.conf (as the Debian installer writes it)
HOMEHOST <system>
MAILADDR root

# definitions of existing MD arrays
ARRAY /dev/md/0  metadata=1.2 UUID=$MD_UUID name=$MD_NAME
EOF
    ;;
esac
if [ $layout = crypt ]; then
    echo "$CRYPT_NAME UUID=$LUKS_UUID none luks,discard,initramfs" >"$mnt/etc/crypttab"
fi
mount -t tmpfs -o mode=0755 e2e-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$mnt/dev/"
mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
chroot "$mnt" update-initramfs -u -k all >&2
chroot "$mnt" lsinitramfs "/boot/initrd.img-$kver" >"$work/initrd.list"
grep -q 'sbin/lvm$' "$work/initrd.list" || { log "the initramfs has no lvm"; exit 1; }
case $layout in
md)
    grep -q 'sbin/mdadm$' "$work/initrd.list" || { log "the initramfs has no mdadm"; exit 1; }
    grep -q 'etc/mdadm/mdadm.conf$' "$work/initrd.list" || { log "the initramfs has no mdadm.conf"; exit 1; }
    grep -q '/raid1.ko' "$work/initrd.list" || { log "the initramfs has no raid1 module"; exit 1; }
    ;;
crypt)
    grep -q 'sbin/cryptsetup$' "$work/initrd.list" || { log "the initramfs has no cryptsetup"; exit 1; }
    grep -q 'cryptroot/crypttab$' "$work/initrd.list" || { log "the initramfs has no cryptroot crypttab"; exit 1; }
    ;;
esac
umount "$mnt/sys" "$mnt/proc" "$mnt/dev"

{
    echo "LAYOUT=$layout"
    case $layout in
    lvm|crypt)
        cat <<EOF
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
        ;;
    md)
        cat <<EOF
MD_UUID=$MD_UUID
MD_NAME=$MD_NAME
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
EOF
        ;;
    esac
    if [ $layout = crypt ]; then
        echo "LUKS_UUID=$LUKS_UUID"
        echo "CRYPT_NAME=$CRYPT_NAME"
        echo "CRYPT_PASSPHRASE='$CRYPT_PASSPHRASE'"
    fi
} >"$mnt/e2e-install.env"
cat >"$mnt/e2e-install" <<'SCRIPT'
#!/bin/sh
# PID 1 of the installer guest (build-source-stack.sh): target /dev/vda (md: and /dev/vdb),
# this root partition 3 of the disk after them.
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
# No udev here: libdevmapper makes the /dev/mapper nodes itself, lvm scans /dev, mdadm makes
# its own nodes.
export DM_DISABLE_UDEV=1 MDADM_NO_UDEV=1
lvmc='devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" } activation { udev_sync = 0 udev_rules = 0 }'
modprobe dm_mod
modprobe vfat

t=/target
mkdir -p $t
if [ "$LAYOUT" = md ]; then
    modprobe raid1
    for n in 1 2; do [ -b /dev/vda$n ] && [ -b /dev/vdb$n ]; done
    step "the MD array"
    mdadm --create /dev/md0 --run --metadata=1.2 --level=raid1 --raid-devices=2 \
        --uuid="$MD_UUID" --name="$MD_NAME" --assume-clean /dev/vda2 /dev/vdb2
    [ -b /dev/md0 ]
    step "the filesystem"
    mkfs.ext4 -q -F -U "$ROOT_UUID" -L "$ROOT_LABEL" /dev/md0
    mount /dev/md0 $t
else
    for n in 1 2 3 4; do [ -b /dev/vda$n ]; done
    pv=/dev/vda4
    if [ "$LAYOUT" = crypt ]; then
        modprobe dm_crypt
        step "the LUKS container"
        printf '%s' "$CRYPT_PASSPHRASE" >/run/e2e.key
        cryptsetup luksFormat --batch-mode --type luks2 --uuid "$LUKS_UUID" \
            --pbkdf argon2id --pbkdf-memory 65536 --pbkdf-parallel 1 --pbkdf-force-iterations 4 \
            --key-file /run/e2e.key /dev/vda4
        cryptsetup open --allow-discards --key-file /run/e2e.key /dev/vda4 "$CRYPT_NAME"
        rm /run/e2e.key
        pv="/dev/mapper/$CRYPT_NAME"
    fi
    step "the LVM stack"
    pvcreate --config "$lvmc" -y --uuid "$PV_UUID" --norestorefile "$pv"
    vgcreate --config "$lvmc" "$VG" "$pv"
    free=$(vgs --config "$lvmc" --noheadings -o vg_free_count "$VG" | tr -d ' ')
    lvcreate --config "$lvmc" -y -Wy -Zy -n root -l $((free - SWAP_EXTENTS - FREE_EXTENTS)) "$VG"
    lvcreate --config "$lvmc" -y -Wy -Zy -n swap -l "$SWAP_EXTENTS" "$VG"
    [ -b "/dev/mapper/$VG-root" ] && [ -b "/dev/mapper/$VG-swap" ]

    step "the filesystems"
    mkfs.ext4 -q -F -U "$ROOT_UUID" -L "$ROOT_LABEL" "/dev/mapper/$VG-root"
    mkswap -U "$SWAP_UUID" "/dev/mapper/$VG-swap"
    mkfs.ext4 -q -F -U "$BOOT_UUID" -L "$BOOT_LABEL" /dev/vda3
    mkfs.vfat -F 32 -s 1 -i "$ESP_VOLID" -n "$ESP_LABEL" /dev/vda2

    mount "/dev/mapper/$VG-root" $t
    mkdir $t/boot
    mount /dev/vda3 $t/boot
fi
step "copying the system"
set +x
tar -C / --one-file-system --xattrs --xattrs-include='*' --acls \
    --exclude=./target --exclude=./e2e-install --exclude=./e2e-install.env --exclude=./lost+found \
    -cpf - . | tar -C $t --xattrs --xattrs-include='*' --acls --numeric-owner -xpf -
step "copied"
if [ "$LAYOUT" != md ]; then
    rm -rf $t/boot/efi && mkdir $t/boot/efi
    mount -t vfat /dev/vda2 $t/boot/efi
fi

mount --bind /dev $t/dev
mount -t proc proc $t/proc
mount -t sysfs sysfs $t/sys
mount -t tmpfs -o mode=0755 tmpfs $t/run
mkdir -p $t/run/lock $t/run/lvm
if [ "$LAYOUT" = md ]; then
    step "grub-install (BIOS, both disks)"
    chroot $t grub-install --target=i386-pc /dev/vda
    chroot $t grub-install --target=i386-pc /dev/vdb
    step "update-grub"
    chroot $t update-grub
    step "checks"
    grep -q "root=UUID=$ROOT_UUID" $t/boot/grub/grub.cfg
else
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
fi

set +x
if [ "$LAYOUT" = md ]; then
    echo "E2E-ENV MD_DATA_OFFSET=$(mdadm --examine /dev/vda2 | sed -n 's/^ *Data Offset : \([0-9]*\) sectors.*/\1/p')"
    echo "E2E-ENV MD_DEV_UUID_A=$(mdadm --examine /dev/vda2 | sed -n 's/^ *Device UUID : \([0-9a-f:]*\).*/\1/p')"
    echo "E2E-ENV MD_DEV_UUID_B=$(mdadm --examine /dev/vdb2 | sed -n 's/^ *Device UUID : \([0-9a-f:]*\).*/\1/p')"
else
    echo "E2E-ENV VG_UUID=$(vgs --config "$lvmc" --noheadings -o vg_uuid "$VG" | tr -d ' ')"
    echo "E2E-ENV ROOT_LV_UUID=$(lvs --config "$lvmc" --noheadings -o lv_uuid "$VG/root" | tr -d ' ')"
    echo "E2E-ENV SWAP_LV_UUID=$(lvs --config "$lvmc" --noheadings -o lv_uuid "$VG/swap" | tr -d ' ')"
    echo "E2E-ENV PE_START=$(pvs --config "$lvmc" --noheadings --units s --nosuffix -o pe_start "$pv" | tr -d ' ')"
    echo "E2E-ENV EXTENT_BYTES=$(vgs --config "$lvmc" --noheadings --units b --nosuffix -o vg_extent_size "$VG" | tr -d ' ')"
    echo "E2E-ENV ROOT_EXTENTS=$(lvs --config "$lvmc" --noheadings -o seg_size_pe "$VG/root" | tr -d ' ')"
fi
set -x
if [ "$LAYOUT" = md ]; then
    umount $t/run $t/sys $t/proc $t/dev $t
    mdadm --stop /dev/md0
else
    umount $t/run $t/sys $t/proc $t/dev $t/boot/efi $t/boot $t
    vgchange --config "$lvmc" -an "$VG"
    if [ "$LAYOUT" = crypt ]; then cryptsetup close "$CRYPT_NAME"; fi
fi
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
# shellcheck disable=SC2086 # $targets: the target disks' -drive options
timeout "$INSTALL_TIMEOUT" qemu-system-x86_64 -machine pc,accel=tcg -cpu qemu64,+rdrand -m 1536M -smp 2 \
    -device virtio-rng-pci -nic none -no-reboot -display none -monitor none -serial "file:$work/install.log" \
    -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
    -append "root=$inst_root rw init=/e2e-install console=ttyS0,115200 panic=1 quiet modprobe.blacklist=floppy" \
    $targets \
    -drive "file=$inst,if=virtio,format=raw" 2>"$work/qemu.stderr" || {
    tail -n 40 "$work/install.log" >&2; cat "$work/qemu.stderr" >&2
    log "the installer guest failed or timed out (${INSTALL_TIMEOUT}s)"; exit 1; }
log "installer guest took $(( $(date +%s) - t1 )) s"
grep -q '^E2E-INSTALL-DONE' "$work/install.log" || {
    tail -n 40 "$work/install.log" >&2
    log "the installer guest stopped without E2E-INSTALL-DONE (console: $work/install.log)"; exit 1; }
rm -f "$inst" "$work/vmlinuz" "$work/initrd.img"
reported() { sed -n "s/^E2E-ENV \([A-Z_]*=[A-Za-z0-9:-]*\)\r*$/\1/p" "$work/install.log"; }

# --- checks from the host: /boot's GRUB config and kernel, the ESP's files ---------------------------
case $layout in
lvm|crypt)
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
    ;;
md)
    # / on md0 starts MD_DATA_OFFSET sectors into partition 2 (sector 4096) of either disk
    offset=$(reported | sed -n 's/^MD_DATA_OFFSET=//p')
    [ -n "$offset" ] || { log "the installer did not report MD_DATA_OFFSET"; exit 1; }
    KERNEL_OFFSET=$((offset * 512))
    for f in "$disk" "$disk_b"; do
        loop=$(losetup -r -f --show -o $((4096 * 512 + KERNEL_OFFSET)) "$f")
        mount -o ro,noload "$loop" "$mnt"
        grep -q "root=UUID=$ROOT_UUID" "$mnt/boot/grub/grub.cfg" || { log "$f: /boot/grub/grub.cfg does not boot root=UUID=$ROOT_UUID"; exit 1; }
        [ -f "$mnt/boot/vmlinuz-$kver" ] && [ -f "$mnt/boot/initrd.img-$kver" ] || { log "$f: /boot holds no kernel $kver"; exit 1; }
        umount "$mnt"
        losetup -d "$loop"
        loop=""
    done
    rmdir "$work/esp"
    ;;
esac

{
    cat <<EOF
LAYOUT=$layout
RELEASE=$RELEASE
DISKS=$DISKS
DISK_GUID=$DISK_GUID
BIOS_PARTUUID=$BIOS_PARTUUID
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
MARKER=$MARKER
EOF
    case $layout in
    lvm|crypt)
        cat <<EOF
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
SWAP_LV=swap
SWAP_UUID=$SWAP_UUID
ROOT_DEV=/dev/mapper/$VG-root
SWAP_DEV=/dev/mapper/$VG-swap
FREE_EXTENTS=$FREE_EXTENTS
KERNEL_PART=3
KERNEL_DIR=.
ROOT_ARG=/dev/mapper/$VG-root
EOF
        ;;
    md)
        cat <<EOF
DISK_B_GUID=$DISK_B_GUID
BIOS_B_PARTUUID=$BIOS_B_PARTUUID
MD_PARTUUID=$MD_PARTUUID
MD_B_PARTUUID=$MD_B_PARTUUID
MD_UUID=$MD_UUID
MD_NAME=$MD_NAME
ROOT_DEV=/dev/md0
KERNEL_PART=2
KERNEL_DIR=boot
KERNEL_OFFSET=$KERNEL_OFFSET
ROOT_ARG=UUID=$ROOT_UUID
EOF
        ;;
    esac
    if [ $layout = crypt ]; then
        cat <<EOF
LUKS_UUID=$LUKS_UUID
CRYPT_NAME=$CRYPT_NAME
CRYPT_PASSPHRASE=$CRYPT_PASSPHRASE
EOF
    fi
    reported
} >"$work/source.env"
case $layout in
lvm|crypt) want="VG_UUID ROOT_LV_UUID SWAP_LV_UUID PE_START EXTENT_BYTES ROOT_EXTENTS" ;;
md) want="MD_DATA_OFFSET MD_DEV_UUID_A MD_DEV_UUID_B" ;;
esac
for k in $want; do
    grep -q "^$k=." "$work/source.env" || { log "the installer did not report $k"; exit 1; }
done
rmdir "$work/mnt"
touch "$work/done"
for old in "$cache"/source-$layout-*; do
    [ -d "$old" ] && rm -rf --one-file-system "$old"
done
mv "$work" "$out"
log "disk built in $(( $(date +%s) - t0 )) s: $out"
echo "$out"
