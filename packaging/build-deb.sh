#!/usr/bin/env bash
# Builds the Debian package target/debian/osimage_VERSION-1_amd64.deb: the stripped `dist`
# binary, its man pages and completions (packaging/build-assets.sh), docs/*.md in
# /usr/share/doc/osimage. Needs cargo-deb (`cargo install cargo-deb --locked`) and
# dpkg-dev's tools (dpkg-shlibdeps, for the libc6 dependency). docs/INSTALL.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/build-assets.sh
# --no-build: build-assets.sh built it; --profile dist: take target/dist/osimage wherever
# the assets say target/release/.
cargo deb --no-build --profile dist --locked "$@"
