#!/bin/sh
# The end-to-end test's source system (tests/e2e_restore.rs, DESIGN.md "Testing layers" 3):
# a minimal Debian on ONE GPT disk that boots by BIOS and by UEFI.
#
#   p1  1 MiB   BIOS boot partition (GRUB's core.img, grub-install --target=i386-pc)
#   p2  64 MiB  ESP, FAT32 (grub-install --removable --no-nvram --uefi-secure-boot:
#               EFI/BOOT/BOOTX64.EFI is Debian's Microsoft-signed shim, then the signed GRUB)
#   p3  rest    root, ext4, fixed UUID and label; fstab mounts / and /boot/efi by UUID
#
# On boot a one-shot unit prints `OSIMAGE-E2E-BOOTED firmware=BIOS|UEFI secureboot=on|off|none
# machine-id=ID hostname=NAME ssh=SHA256:... /=DEV ...` on ttyS0 once multi-user is reached,
# then powers off (the script is osimage-e2e-booted.sh beside this one; with
# `osimage.e2e.capture=1` on the kernel command line it first runs `osimage capture /` from
# an attached tools disk: tests/common/e2e/guest_capture.rs). The boot chain is signed (shim, GRUB, kernel), so the disk also boots on
# UEFI firmware with Secure Boot on.
#
# Slimmed for the CI time budget (stage 2 only; the debootstrapped tree is untouched): each
# restore test unpacks this system in a guest at ~10 MiB/s under TCG, and a full Debian
# kernel's modules were over half of it. The disk drops the module subtrees of hardware no
# test VM has (GPU, sound, media, wireless, Bluetooth, InfiniBand, IIO, staging, comedi,
# ISDN, MTD, hwmon, SCSI targets, NICs, FC/iSCSI HBAs, USB serial and gadget, MMC, laptop
# platform drivers, network filesystems; the list is TRIM below) with every module needing
# one of them; the documentation, man pages and message catalogues under /usr/share; and
# apt's package lists (debootstrap's download index, remade by `apt update`). It keeps what
# the tests boot from or the rescue environment loads (virtio, NVMe, ATA/AHCI, SCSI disk/CD,
# USB storage and HID, ext4, vfat, isofs, xfs, btrfs, dm/md, crypto, efivarfs): the script
# fails if a module rescue/modules.list names no longer resolves. depmod and a new initramfs
# (both chrooted) match the trimmed tree. 745 MB of files became about 350 MB.
#
# Usage: build-source.sh CACHE_DIR   -> prints the directory holding the result:
#   disk.img    the 2 GiB sparse disk
#   esp/        the ESP's files as the FAT holds them (read back with mtools): the capture
#               presents them at ROOT/boot/efi, since this host's kernel cannot mount vfat
#   source.env  the fixed identifiers (KEY=VALUE); KERNEL_PART, KERNEL_DIR and ROOT_ARG say
#               where the kernel is and what root= boots it (the in-guest capture boots it
#               directly)
# Idempotent: the result is cached under CACHE_DIR/source-<hash of this script and the marker
# script>; a change to either rebuilds it. The debootstrapped tree is cached apart (base-<hash of the release
# and package list>), so editing the disk steps does not fetch Debian again.
# debootstrap uses the Debian mirror apt is configured with here (read at run time).
# Needs root, debootstrap, sfdisk, losetup, partx, mkfs.ext4, mkfs.vfat, mtools.
set -eu

cache=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/build-source.sh" "$here/osimage-e2e-booted.sh" | sha256sum | cut -c1-16)
out="$cache/source-$key"

exec 9>"$cache/.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

log() { echo "build-source: $*" >&2; }

# --- fixed identifiers (the restored disk must come back with the same ones) -------------
DISK_GUID=E2E0D15C-0000-4000-8000-000000000000
BIOS_PARTUUID=E2E0D15C-0000-4000-8000-000000000001
ESP_PARTUUID=E2E0D15C-0000-4000-8000-000000000002
ROOT_PARTUUID=E2E0D15C-0000-4000-8000-000000000003
ROOT_UUID=e2e0f5e5-0000-4000-8000-000000000003
ROOT_LABEL=e2e-root
ESP_VOLID=E2E00002          # shown as E2E0-0002
ESP_LABEL=E2EESP
DISK_BYTES=$((2 * 1024 * 1024 * 1024))
MARKER=OSIMAGE-E2E-BOOTED

# --- the Debian release and the mirror apt uses here --------------------------------------
. /etc/os-release
release=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}

# The first URI of an enabled `deb` source for the release itself (not -updates/-security):
# deb822 files (*.sources, `URIs:`) first, then one-line sources.list files.
apt_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v rel="$release" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; suite = 0; deb = 0; off = 0
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/) continue
                    if (line ~ /^Types:/ && line ~ /[ \t]deb([ \t]|$)/) deb = 1
                    if (line ~ /^Enabled:[ \t]*no/) off = 1
                    if (line ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", line); split(line, u, /[ \t]+/); uri = u[1] }
                    if (line ~ /^Suites:/) {
                        sub(/^Suites:[ \t]*/, "", line); n = split(line, s, /[ \t]+/)
                        for (j = 1; j <= n; j++) if (s[j] == rel) suite = 1
                    }
                }
                if (uri != "" && suite && deb && !off) { print uri; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk -v rel="$release" '$1 == "deb" && $3 == rel { print $2 }'
    done
}
mirror=$(apt_mirror | head -n1)
[ -n "$mirror" ] || { log "no apt source for $release in /etc/apt (deb822 URIs: or sources.list)"; exit 1; }

# --- stage 1: the debootstrapped tree (cached by release + packages) -----------------------
# lvm2, mdadm, cryptsetup(-initramfs): the stacked sources (build-source-lvm.sh) use this tree
# too; mtools: `osimage capture /` run inside a source system builds the ISO's ESP with it.
packages=linux-image-amd64,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,grub-common,grub2-common,shim-signed,grub-efi-amd64-signed,efibootmgr,systemd-sysv,udev,e2fsprogs,dosfstools,kmod,openssh-server,lvm2,mdadm,cryptsetup,cryptsetup-initramfs,mtools
base_key=$(printf '%s\n' "$release" "$packages" minbase 1 | sha256sum | cut -c1-16)
base="$cache/base-$base_key"
if [ ! -f "$base.done" ]; then
    rm -rf --one-file-system "$base"
    log "debootstrap $release (minbase + $packages) from the apt mirror"
    t0=$(date +%s)
    # Into a tmpfs: dpkg syncs every file it unpacks, which costs minutes on a disk.
    staging="$cache/base.tmpfs"
    mkdir -p "$staging"
    mountpoint -q "$staging" || mount -t tmpfs -o size=4G,mode=0755 e2e-debootstrap "$staging"
    rm -rf --one-file-system "$staging/root"
    debootstrap --variant=minbase --include="$packages" "$release" "$staging/root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache/debootstrap.log" >&2; umount "$staging"
        log "debootstrap failed (log: $cache/debootstrap.log)"; exit 1; }
    rm -rf "$staging"/root/var/cache/apt/archives/*.deb
    cp -a "$staging/root" "$base"
    umount "$staging"
    rmdir "$staging"
    touch "$base.done"
    log "debootstrap took $(( $(date +%s) - t0 )) s"
fi
for old in "$cache"/base-*.done; do
    [ "$old" = "$base.done" ] || { rm -rf --one-file-system "${old%.done}"; rm -f "$old"; }
done

# --- stage 2: the disk ---------------------------------------------------------------------
work="$cache/build.tmp"
mnt="$work/mnt"
loop=""
cleanup() {
    for m in "$mnt/tmp/esp" "$mnt/sys" "$mnt/proc" "$mnt/dev" "$mnt"; do
        if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m"; fi
    done
    if [ -n "$loop" ]; then
        partx -d "$loop" 2>/dev/null || true
        losetup -d "$loop" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Never remove a directory something is still mounted under (a /dev bind above all).
if grep -q " $work" /proc/self/mounts; then log "$work still has mounts; refusing to clean it"; exit 1; fi
rm -rf --one-file-system "$work"
mkdir -p "$work/mnt" "$work/esp"
t0=$(date +%s)
disk="$work/disk.img"
truncate -s "$DISK_BYTES" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $DISK_GUID
first-lba: 2048
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=$BIOS_PARTUUID, name="bios-boot"
start=4096, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="esp"
start=135168, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$ROOT_PARTUUID, name="root"
EOF
loop=$(losetup -f --show "$disk")
partx -a "$loop"
for n in 1 2 3; do
    # no udev: the kernel's devtmpfs makes the nodes; make them if it did not
    [ -b "${loop}p$n" ] || mknod "${loop}p$n" b $(tr ':' ' ' <"/sys/block/${loop#/dev/}/${loop#/dev/}p$n/dev")
done
mkfs.ext4 -q -F -U "$ROOT_UUID" -L "$ROOT_LABEL" "${loop}p3"
mkfs.vfat -F 32 -s 1 -i "$ESP_VOLID" -n "$ESP_LABEL" "${loop}p2" >/dev/null
mount "${loop}p3" "$mnt"
cp -a "$base/." "$mnt/"

# --- slimming (the CI time budget; see the header) ----------------------------------------------
# The subtrees in TRIM go, then every module depending on a gone one (the kernel package's
# modules.dep, to a fixed point: nvme-rdma goes with InfiniBand, nvme stays). Then
# /usr/share/{doc,man,info} and the message catalogues under /usr/share/locale (locale.alias
# stays). The check after depmod: each rescue/modules.list name the kernel has still resolves.
kver=$(ls "$mnt/usr/lib/modules")
case "$kver" in *[!A-Za-z0-9._+-]*|"") log "not exactly one kernel in $mnt/usr/lib/modules: $kver"; exit 1 ;; esac
moddir="$mnt/usr/lib/modules/$kver"
TRIM="sound drivers/gpu drivers/media drivers/infiniband drivers/iio drivers/staging
    drivers/comedi drivers/isdn drivers/bluetooth drivers/mtd drivers/hwmon drivers/target
    drivers/net/wireless drivers/net/ethernet drivers/net/can drivers/net/usb drivers/net/wwan
    drivers/net/ieee802154 drivers/net/hamradio drivers/net/arcnet drivers/net/fddi
    drivers/net/appletalk drivers/net/hippi drivers/net/plip drivers/net/slip drivers/net/ppp
    drivers/net/wan drivers/net/phy drivers/net/pcs drivers/net/mdio
    drivers/scsi/lpfc drivers/scsi/qla2xxx drivers/scsi/qla4xxx drivers/scsi/bfa
    drivers/scsi/aic7xxx drivers/scsi/libfc drivers/usb/serial drivers/usb/gadget
    drivers/mmc drivers/platform
    net/wireless net/mac80211 net/bluetooth net/sunrpc net/ceph
    fs/nfs fs/nfsd fs/ocfs2 fs/smb fs/gfs2 fs/ceph fs/f2fs"
pat=$(for t in $TRIM; do printf '^kernel/%s/|' "$t"; done)
awk -F': *' -v pat="${pat%|}" '
    { deps[$1] = $2; if ($1 ~ pat) gone[$1] = 1 }
    END {
        do {
            more = 0
            for (m in deps) if (!(m in gone)) {
                n = split(deps[m], d, " ")
                for (i = 1; i <= n; i++) if (d[i] in gone) { gone[m] = 1; more = 1; break }
            }
        } while (more)
        for (m in gone) if (m !~ pat) print m
    }' "$moddir/modules.dep" | while read -r m; do rm -f "$moddir/$m"; done
for t in $TRIM; do rm -rf "$moddir/kernel/$t"; done
find "$mnt/usr/share/doc" "$mnt/usr/share/man" "$mnt/usr/share/info" -mindepth 1 -delete
find "$mnt/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
find "$mnt/var/lib/apt/lists" -maxdepth 1 -type f -delete   # 50 MB of index: `apt update` remakes it
chroot "$mnt" depmod "$kver"
sed -e 's/#.*//' "$here/../../rescue/modules.list" | while read -r name; do
    [ -n "$name" ] || continue
    modprobe -d "$base" -S "$kver" -D "$name" >/dev/null 2>&1 || continue   # the kernel lacks it
    modprobe -d "$mnt" -S "$kver" -D "$name" >/dev/null ||
        { log "slimming removed $name (rescue/modules.list) or what it needs"; exit 1; }
done

# --- the system's configuration --------------------------------------------------------------
esp_uuid=$(echo "$ESP_VOLID" | sed 's/^\(....\)/\1-/')
cat >"$mnt/etc/fstab" <<EOF
# <file system>          <mount point>  <type>  <options>          <dump> <pass>
UUID=$ROOT_UUID  /          ext4  errors=remount-ro  0 1
UUID=$esp_uuid                             /boot/efi  vfat  umask=0077         0 1
EOF
echo osimage-e2e >"$mnt/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tosimage-e2e\n' >"$mnt/etc/hosts"
mkdir -p "$mnt/boot/efi"
chroot "$mnt" sh -c 'echo root:osimage | chpasswd'

# The marker (and, with osimage.e2e.capture=1, the in-guest capture): osimage-e2e-booted.sh.
install -m 755 "$here/osimage-e2e-booted.sh" "$mnt/usr/local/sbin/osimage-e2e-booted"
# DefaultDependencies=no: a unit wanted by multi-user.target and ordered after it would
# otherwise form a cycle (targets order themselves after what they want).
cat >"$mnt/etc/systemd/system/osimage-e2e-booted.service" <<EOF
[Unit]
Description=osimage end-to-end test: report a completed boot, then power off
DefaultDependencies=no
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/osimage-e2e-booted
ExecStartPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/osimage-e2e-booted.service \
    "$mnt/etc/systemd/system/multi-user.target.wants/osimage-e2e-booted.service"

cat >"$mnt/etc/default/grub" <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF

# --- the boot loaders ------------------------------------------------------------------------
# The chroot's /dev: a tmpfs with the nodes GRUB needs and the /dev/disk/by-uuid links udev
# would make (update-grub writes root=UUID= only when the link exists). Not the host's /dev:
# devtmpfs is one instance, and the links must not leak into the host.
mount -t tmpfs -o mode=0755 e2e-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$loop" "$loop"p1 "$loop"p2 "$loop"p3 "$mnt/dev/"
mkdir -p "$mnt/dev/disk/by-uuid" "$mnt/dev/disk/by-partuuid"
ln -s "../../${loop#/dev/}p3" "$mnt/dev/disk/by-uuid/$ROOT_UUID"
ln -s "../../${loop#/dev/}p2" "$mnt/dev/disk/by-uuid/$esp_uuid"
mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
# The initramfs the kernel package made holds modules slimming removed: made anew.
chroot "$mnt" update-initramfs -u -k all >&2
chroot "$mnt" grub-install --target=i386-pc "$loop" >&2
# The ESP cannot be mounted here (no vfat in this kernel). grub-install insists that
# --efi-directory is on a FAT: it finds the directory's device in mountinfo and probes it.
# So the directory is a tmpfs whose mount source is named after the ESP's partition: the
# probe reads the real FAT, the files land in the tmpfs, and mtools copies them into the FAT.
mkdir -p "$mnt/tmp/esp"
mount -t tmpfs "${loop}p2" "$mnt/tmp/esp"
chroot "$mnt" grub-install --target=x86_64-efi --efi-directory=/tmp/esp --removable --no-nvram --uefi-secure-boot >&2
chroot "$mnt" update-grub >&2
grep -q "root=UUID=$ROOT_UUID" "$mnt/boot/grub/grub.cfg" || { log "grub.cfg does not boot root=UUID=$ROOT_UUID"; exit 1; }
[ -f "$mnt/tmp/esp/EFI/BOOT/BOOTX64.EFI" ] || { log "grub-install left no EFI/BOOT/BOOTX64.EFI"; exit 1; }
cmp -s "$mnt/tmp/esp/EFI/BOOT/BOOTX64.EFI" "$mnt/usr/lib/shim/shimx64.efi.signed" ||
    { log "EFI/BOOT/BOOTX64.EFI is not the signed shim"; exit 1; }
# The vendor directory an installed Debian also has (grub-install without --removable): the
# restore's NVRAM entry starts \EFI\debian\shimx64.efi. No fbx64.efi: shim's fallback would
# reset the VM on a first boot.
mkdir -p "$mnt/tmp/esp/EFI/debian"
cp "$mnt/tmp/esp/EFI/BOOT/BOOTX64.EFI" "$mnt/tmp/esp/EFI/debian/shimx64.efi"
cp "$mnt/tmp/esp/EFI/BOOT/grubx64.efi" "$mnt/tmp/esp/EFI/BOOT/mmx64.efi" \
    "$mnt/tmp/esp/EFI/BOOT/grub.cfg" "$mnt/tmp/esp/EFI/debian/"
export MTOOLS_SKIP_CHECK=1
fat="$disk@@$((4096 * 512))"   # the ESP inside the image file, for mtools
mcopy -s -m -i "$fat" "$mnt/tmp/esp/EFI" ::/
umount "$mnt/tmp/esp" "$mnt/sys" "$mnt/proc" "$mnt/dev"
rmdir "$mnt/tmp/esp"
# The files as the FAT holds them (2 s times, mtools' modes): what the capture is shown.
mcopy -s -m -n -i "$fat" ::/EFI "$work/esp/"

umount "$mnt"
partx -d "$loop"
losetup -d "$loop"
loop=""
cat >"$work/source.env" <<EOF
RELEASE=$release
DISK_GUID=$DISK_GUID
BIOS_PARTUUID=$BIOS_PARTUUID
ESP_PARTUUID=$ESP_PARTUUID
ROOT_PARTUUID=$ROOT_PARTUUID
ROOT_UUID=$ROOT_UUID
ROOT_LABEL=$ROOT_LABEL
ESP_UUID=$esp_uuid
ESP_LABEL=$ESP_LABEL
MARKER=$MARKER
KERNEL_PART=3
KERNEL_DIR=boot
ROOT_ARG=UUID=$ROOT_UUID
EOF
rmdir "$work/mnt"
touch "$work/done"
for old in "$cache"/source-*; do
    case "$old" in "$cache"/source-lvm-*) continue ;; esac   # build-source-lvm.sh's
    [ -d "$old" ] && rm -rf --one-file-system "$old"
done
mv "$work" "$out"
log "disk built in $(( $(date +%s) - t0 )) s: $out"
echo "$out"
