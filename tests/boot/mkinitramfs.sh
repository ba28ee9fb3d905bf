#!/bin/sh
# Build the boot test's initramfs: busybox-static as the only program, an /init that prints
# the marker on the serial console and powers the VM off. With `osimage.isofs=1` on the kernel
# command line it first loads the modules of MODULES_DIR (in MODULES_DIR/order), mounts the
# ISO from /dev/vda with Linux's iso9660 driver and prints check-tree.sh's view of /fixture.
# Usage: mkinitramfs.sh OUT.cpio.gz [MODULES_DIR]
set -eu
out="$1"
mods="${2:-}"
here=$(dirname "$0")
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! LC_ALL=C ldd "$bb" 2>&1 | grep -qE 'not a dynamic|statically linked'; then
    echo "busybox missing or not static: install busybox-static" >&2; exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/dev" "$stage/proc" "$stage/sys" "$stage/mnt" "$stage/lib/modules"
cp "$bb" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 660 "$stage/dev/ttyS0" c 4 64
cp "$here/check-tree.sh" "$stage/bin/check-tree"
if [ -n "$mods" ]; then cp "$mods"/*.ko "$mods/order" "$stage/lib/modules/"; fi
cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
if [ -d /sys/firmware/efi ]; then fw=UEFI; else fw=BIOS; fi
echo "OSIMAGE-ISO-BOOT-OK firmware=$fw" > /dev/ttyS0
if grep -q 'osimage.isofs=1' /proc/cmdline; then
    for m in $(cat /lib/modules/order); do
        insmod "/lib/modules/$m" || echo "ISOFS-FAIL insmod $m" > /dev/ttyS0
    done
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    if mount -t iso9660 -o ro /dev/vda /mnt; then
        sh /bin/check-tree /mnt/fixture > /dev/ttyS0 2>&1
    else
        echo "ISOFS-FAIL mount" > /dev/ttyS0
    fi
    echo "ISOFS-END" > /dev/ttyS0
fi
sync
poweroff -f
INIT
chmod 755 "$stage/init"
( cd "$stage" && find . | cpio -o -H newc --quiet ) | gzip -9 > "$out.part"
mv "$out.part" "$out"
