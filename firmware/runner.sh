#!/bin/sh
# Cargo runner for thumbv7em-none-eabihf (.cargo/config.toml). Cargo picks runners per target,
# not per binary, so this script picks the board by the ELF's name (the binary's name):
#   qemu-mps2-an386  boots QEMU (Cortex-M4); frames come from frames.txt in the current folder, and
#                    the output is binary defmt (decode with `defmt-print -e <elf>` or `tinycnn firmware`)
#   qemu-mps2-an500  the same on QEMU's Cortex-M7 board
#   stm32h743        flashes a NUCLEO-H743ZI over its ST-LINK and prints the defmt log (probe-rs)
# Any further arguments go to QEMU or probe-rs.
set -eu

if [ $# -lt 1 ]; then
    echo "runner.sh: usage: runner.sh <elf> [args...] (cargo run passes the ELF)" >&2
    exit 2
fi
elf=$1
shift

case $(basename "$elf") in
qemu-mps2-an386)
    # `-icount shift=0`: one instruction per virtual nanosecond, so the CMSDK timer (25 MHz)
    # ticks once per 40 instructions.
    exec qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" "$@"
    ;;
qemu-mps2-an500)
    exec qemu-system-arm -cpu cortex-m7 -machine mps2-an500 -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" "$@"
    ;;
stm32h743)
    if ! command -v probe-rs >/dev/null 2>&1; then
        echo "runner.sh: probe-rs is not on PATH. Install it from https://probe.rs (its own" >&2
        echo "installer or release packages), connect the NUCLEO's ST-LINK USB, then rerun." >&2
        echo "The ELF is $elf." >&2
        exit 127
    fi
    exec probe-rs run --chip STM32H743ZITx "$@" "$elf"
    ;;
*)
    echo "runner.sh: no board runs $elf: the binaries are qemu-mps2-an386, qemu-mps2-an500 and stm32h743" >&2
    exit 2
    ;;
esac
