//! The I/O APIC (at its PC-standard address, `0xfec00000`): routes COM1's interrupt
//! (ISA IRQ 4, wired to pin 4 on microvm and q35 alike) to the CPU, so that console
//! input wakes the shim even while every domain sleeps. Every other pin stays masked.

use hypervisor_shim::trap::SERIAL_VECTOR;

use super::boot::DIRECTMAP;

const BASE: u64 = 0xfec0_0000;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// First redirection-table register (two 32-bit halves per pin).
const REDTBL: u32 = 0x10;
/// The pin COM1's IRQ 4 arrives on.
const COM1_PIN: u32 = 4;

fn write(reg: u32, v: u32) {
    // SAFETY: the I/O APIC's index and data registers, mapped through the direct map
    // (below 4 GiB); the shim is their only user, on one CPU with interrupts off.
    unsafe {
        ((DIRECTMAP + BASE + IOREGSEL) as *mut u32).write_volatile(reg);
        ((DIRECTMAP + BASE + IOWIN) as *mut u32).write_volatile(v);
    }
}

/// Routes COM1's interrupt to `SERIAL_VECTOR` on the boot CPU (local APIC id 0):
/// fixed delivery, physical destination, edge-triggered, active high, unmasked.
pub fn route_com1() {
    write(REDTBL + 2 * COM1_PIN + 1, 0);
    write(REDTBL + 2 * COM1_PIN, SERIAL_VECTOR as u32);
}
