#!/bin/sh
# Fetch a Debian amd64 kernel into a cache directory (gitignored) for the ISO boot test.
# Usage: fetch-kernel.sh CACHE_DIR   -> prints the path of the vmlinuz it leaves there.
# The package comes from the apt sources this machine is configured with (never a fixed host).
set -eu
cache="$1"
mkdir -p "$cache"
if [ -f "$cache/vmlinuz" ]; then echo "$cache/vmlinuz"; exit 0; fi
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
    echo "cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1
fi
tmp=$(mktemp -d "$cache/dl.XXXXXX")
( cd "$tmp" && apt-get download "$pkg" >&2 )
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
cp "$tmp"/x/boot/vmlinuz-* "$cache/vmlinuz.part"
mv "$cache/vmlinuz.part" "$cache/vmlinuz"
rm -rf "$tmp"
echo "$cache/vmlinuz"
