//! QEMU's `microvm` machine (hw/i386/microvm.c), the one the shim runs on: where its
//! virtio-mmio transports are and which GSI each interrupts on. The shim finds the
//! devices with it; dom0's drivers find their registers and lines with it.
//!
//! The transports are 512-byte windows from `0xfeb00000`. With the second I/O APIC
//! (QEMU's default when ACPI is on) there are 24 of them, interrupting on GSIs 24..47
//! (the second I/O APIC's pins); without it, 8 on GSIs 5..12. QEMU plugs `-device
//! virtio-*-device` into the last free transport first, so the first device given is
//! at the highest address.

/// The first transport's address.
pub const VIRTIO_MMIO_BASE: u64 = 0xfeb0_0000;
/// Each transport's window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
/// Transports with the second I/O APIC.
pub const TRANSPORTS_WITH_IOAPIC2: usize = 24;
/// Transports without it.
pub const TRANSPORTS_WITHOUT: usize = 8;
/// `MagicValue` ("virt") at offset 0 of a virtio-mmio window.
pub const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;
/// Offset of `DeviceID` (0: no device behind the transport).
pub const VIRTIO_MMIO_DEVICE_ID: u64 = 0x8;
/// The I/O APICs: GSIs 0..23 on the first, 24..47 on the second.
pub const IOAPIC_BASES: [u64; 2] = [0xfec0_0000, 0xfec1_0000];
pub const IOAPIC_PINS: u32 = 24;

/// Transport `i`'s window.
pub fn transport(i: usize) -> u64 {
    VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE
}

/// The GSI of transport `i` on a machine with `transports` of them.
pub fn transport_gsi(i: usize, transports: usize) -> u32 {
    let base = if transports > TRANSPORTS_WITHOUT {
        24
    } else {
        5
    };
    base + i as u32
}

/// The I/O APIC (its index in [`IOAPIC_BASES`]) and pin of a GSI.
pub fn ioapic_pin(gsi: u32) -> Option<(usize, u32)> {
    let apic = (gsi / IOAPIC_PINS) as usize;
    (apic < IOAPIC_BASES.len()).then_some((apic, gsi % IOAPIC_PINS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_as_qemu_builds_it() {
        // `info qtree` of QEMU 7.2 with one virtio-blk-device: the last of 24 transports.
        assert_eq!(transport(23), 0xfeb0_2e00);
        assert_eq!(transport_gsi(23, 24), 47);
        assert_eq!(transport_gsi(7, 8), 12);
        assert_eq!(ioapic_pin(47), Some((1, 23)));
        assert_eq!(ioapic_pin(4), Some((0, 4)));
        assert_eq!(ioapic_pin(48), None);
    }
}
