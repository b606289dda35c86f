//! The I/O APICs (microvm has two: GSIs 0..23 at `0xfec00000`, 24..47 at `0xfec10000`,
//! `pv_core::microvm`). COM1's interrupt (ISA IRQ 4, pin 4 of the first on microvm and
//! q35 alike) wakes the shim for console input even while every domain sleeps; the
//! devices' lines (level-triggered, active high, as microvm's ACPI tables describe
//! virtio-mmio's) are routed to their device vectors, masked until their owner binds
//! them (`hypervisor_shim::devices`). Every other pin stays masked.

use hypervisor_shim::trap::SERIAL_VECTOR;
use pv_core::microvm::{ioapic_pin, IOAPIC_BASES};

use super::boot::DIRECTMAP;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// First redirection-table register (two 32-bit halves per pin).
const REDTBL: u32 = 0x10;
/// The pin COM1's IRQ 4 arrives on.
const COM1_PIN: u32 = 4;
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;

fn write(apic: usize, reg: u32, v: u32) {
    let base = IOAPIC_BASES[apic];
    // SAFETY: an I/O APIC's index and data registers, mapped through the direct map
    // (below 4 GiB); the shim is their only user, on one CPU with interrupts off.
    unsafe {
        ((DIRECTMAP + base + IOREGSEL) as *mut u32).write_volatile(reg);
        ((DIRECTMAP + base + IOWIN) as *mut u32).write_volatile(v);
    }
}

/// Routes COM1's interrupt to `SERIAL_VECTOR` on the boot CPU (local APIC id 0):
/// fixed delivery, physical destination, edge-triggered, active high, unmasked.
pub fn route_com1() {
    write(0, REDTBL + 2 * COM1_PIN + 1, 0);
    write(0, REDTBL + 2 * COM1_PIN, SERIAL_VECTOR as u32);
}

/// Routes `gsi` to `vector` on the boot CPU, level-triggered, active high, masked.
pub fn route_device(gsi: u32, vector: u64) {
    if let Some((apic, pin)) = ioapic_pin(gsi) {
        write(apic, REDTBL + 2 * pin + 1, 0);
        write(apic, REDTBL + 2 * pin, MASKED | LEVEL | vector as u32);
    }
}

/// Masks or unmasks the device line `gsi` routed to `vector`.
pub fn set_masked(gsi: u32, vector: u64, masked: bool) {
    if let Some((apic, pin)) = ioapic_pin(gsi) {
        let mask = if masked { MASKED } else { 0 };
        write(apic, REDTBL + 2 * pin, mask | LEVEL | vector as u32);
    }
}
