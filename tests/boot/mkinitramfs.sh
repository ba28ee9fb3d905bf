#!/bin/sh
# Build the boot test's initramfs: busybox-static as the only program, an /init that prints
# the marker on the serial console and powers the VM off.
# Usage: mkinitramfs.sh OUT.cpio.gz
set -eu
out="$1"
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! LC_ALL=C ldd "$bb" 2>&1 | grep -qE 'not a dynamic|statically linked'; then
    echo "busybox missing or not static: install busybox-static" >&2; exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/dev" "$stage/proc" "$stage/sys"
cp "$bb" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 660 "$stage/dev/ttyS0" c 4 64
cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
if /bin/busybox grep -q efi /proc/cmdline || [ -d /sys/firmware/efi ]; then fw=UEFI; else fw=BIOS; fi
echo "OSIMAGE-ISO-BOOT-OK firmware=$fw" > /dev/ttyS0
/bin/busybox sync
/bin/busybox poweroff -f
INIT
chmod 755 "$stage/init"
( cd "$stage" && find . | cpio -o -H newc --quiet ) | gzip -9 > "$out.part"
mv "$out.part" "$out"
