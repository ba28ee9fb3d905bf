#!/bin/sh
# Fetch a Debian amd64 kernel into a cache directory (gitignored) for the ISO boot test.
# Usage: fetch-kernel.sh CACHE_DIR   -> prints the path of the vmlinuz it leaves there, with
# the modules listed in isofs-modules.txt (beside this script) in CACHE_DIR/modules/.
# The package comes from the apt sources this machine is configured with (never a fixed host).
set -eu
cache="$1"
mkdir -p "$cache"
if [ -f "$cache/vmlinuz" ] && [ -f "$cache/modules/.done" ]; then echo "$cache/vmlinuz"; exit 0; fi
list="$(dirname "$0")/isofs-modules.txt"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
    echo "cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1
fi
tmp=$(mktemp -d "$cache/dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && apt-get download "$pkg" >&2 )
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
rm -rf "$cache/modules"; mkdir -p "$cache/modules"
grep -v '^#' "$list" | while read -r m; do
    [ -n "$m" ] || continue
    src=$(ls "$tmp"/x/lib/modules/*/"$m" "$tmp"/x/lib/modules/*/"$m".xz 2>/dev/null | head -n1)
    [ -n "$src" ] || { echo "module $m not in $pkg" >&2; exit 1; }
    case "$src" in *.xz) xz -dc "$src" > "$cache/modules/$(basename "$m")" ;;
                   *) cp "$src" "$cache/modules/" ;; esac
done
grep -v '^#' "$list" | sed -n 's|.*/||p' > "$cache/modules/order"
touch "$cache/modules/.done"
cp "$tmp"/x/boot/vmlinuz-* "$cache/vmlinuz.part"
mv "$cache/vmlinuz.part" "$cache/vmlinuz"
echo "$cache/vmlinuz"
