#!/bin/sh
# Boots the relocatable test kernel with the loader in QEMU and reports the `pie:` lines.
# Usage: run-test.sh [kaslr yes|no] [relr]   (loader must be built: cargo build -p loader ...)
set -e
cd "$(dirname "$0")"
KASLR=${1:-yes}
./build.sh $2 >/dev/null 2>&1
ESP=$(mktemp -d)
VARS=$(mktemp)
trap 'rm -rf "$ESP" "$VARS"' EXIT
mkdir -p "$ESP/EFI/BOOT" "$ESP/boot"
cp ../../target/x86_64-unknown-uefi/release/loader.efi "$ESP/EFI/BOOT/BOOTX64.EFI"
cp target/x86_64-unknown-none/release/pie-kernel "$ESP/boot/kernel"
echo internal > "$ESP/boot/intmod"
echo config > "$ESP/boot/testmod"
cat > "$ESP/limine.conf" <<EOC
timeout: 0
/PIE test
    protocol: limine
    path: boot():/boot/kernel
    kaslr: $KASLR
    module_path: boot():/boot/testmod
    module_string: config
EOC
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$VARS"
LOG="$ESP/serial.log"
timeout 60 qemu-system-x86_64 -machine q35 -m 256M \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive if=pflash,format=raw,file="$VARS" -drive format=raw,file=fat:rw:"$ESP" \
    -serial file:"$LOG" -display none -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -no-reboot || true
grep -a "^pie:\|loader: \(error\|warning\|kernel\|entering\)" "$LOG"
grep -q "^pie: all passed" "$LOG"
