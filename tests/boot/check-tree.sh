#!/bin/sh
# Describe the tree under DIR, one line per fact, the same way in the guest (busybox) and on
# the host (coreutils): type+mode+mtime of every entry, md5 of every file, target of every link.
cd "$1" || exit 1
find . -mindepth 1 | sort | while read -r p; do stat -c 'ISOFS-STAT %A %Y %n' "$p"; done
find . -type f | sort | while read -r p; do md5sum "$p" | sed 's/^/ISOFS-MD5 /'; done
find . -type l | sort | while read -r p; do echo "ISOFS-LINK $p -> $(readlink "$p")"; done
