#!/bin/sh
# Builds the relocatable test kernel. RUSTFLAGS replaces the workspace's static relocation
# model for x86_64-unknown-none. Pass "relr" to pack relative relocations as RELR.
set -e
cd "$(dirname "$0")"
EXTRA=""
[ "$1" = relr ] && EXTRA="-C link-arg=-z -C link-arg=pack-relative-relocs"
RUSTFLAGS="-C relocation-model=pie -C link-arg=-pie -C link-arg=-T$(pwd)/linker.ld $EXTRA" \
    cargo build --release --target x86_64-unknown-none --target-dir target
