//! Finds the machine's devices for dom0: the virtio-mmio transports of QEMU's microvm
//! with a device behind them (`pv_core::microvm`), read through the direct map, and
//! routes their lines. Device `i` of the list interrupts on `DEVICE_VECTOR_BASE + i`;
//! the table of GSIs by vector is kept here too, for the interrupt entry, which may not
//! take the shim's lock (it also runs while the shim idles, holding it).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use hypervisor_shim::devices::Device;
use hypervisor_shim::trap::{device_of_vector, DEVICE_VECTORS, DEVICE_VECTOR_BASE};
use pv_core::microvm::{
    transport, transport_gsi, TRANSPORTS_WITHOUT, TRANSPORTS_WITH_IOAPIC2, VIRTIO_MMIO_DEVICE_ID,
    VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_SIZE,
};

use super::boot::DIRECTMAP;
use super::ioapic;

/// The GSI of each device vector.
static GSIS: [AtomicU32; DEVICE_VECTORS as usize] =
    [const { AtomicU32::new(u32::MAX) }; DEVICE_VECTORS as usize];
/// Device vectors that fired while the shim idled (bit `i`: device `i`).
static FIRED: AtomicU32 = AtomicU32::new(0);

fn read_u32(pa: u64) -> u32 {
    // SAFETY: a register of a virtio-mmio window below 4 GiB, in the direct map; reads
    // of the magic and device id have no side effects (nothing answers where no
    // transport is, and such reads return no magic).
    unsafe { ((DIRECTMAP + pa) as *const u32).read_volatile() }
}

/// The virtio-mmio transports with a device, routed (masked) to their vectors.
pub fn find() -> Vec<Device> {
    let present = |i| read_u32(transport(i)) == VIRTIO_MMIO_MAGIC;
    // Transport 8 exists only with the second I/O APIC's 24.
    let transports = if present(TRANSPORTS_WITHOUT) {
        TRANSPORTS_WITH_IOAPIC2
    } else {
        TRANSPORTS_WITHOUT
    };
    let mut found = Vec::new();
    for i in 0..transports.min(DEVICE_VECTORS as usize) {
        let base = transport(i);
        if !present(i) || read_u32(base + VIRTIO_MMIO_DEVICE_ID) == 0 {
            continue;
        }
        let gsi = transport_gsi(i, transports);
        let vector = DEVICE_VECTOR_BASE + found.len() as u64;
        GSIS[found.len()].store(gsi, Ordering::Relaxed);
        ioapic::route_device(gsi, vector);
        found.push(Device {
            mmio_base: base,
            mmio_len: VIRTIO_MMIO_SIZE,
            gsi,
        });
    }
    found
}

/// The GSI behind a device vector.
pub fn gsi_of(vector: u64) -> Option<u32> {
    let i = device_of_vector(vector)?;
    let gsi = GSIS[i].load(Ordering::Relaxed);
    (gsi != u32::MAX).then_some(gsi)
}

/// The vector a device line was routed to.
pub fn vector_of(gsi: u32) -> Option<u64> {
    GSIS.iter()
        .position(|g| g.load(Ordering::Relaxed) == gsi)
        .map(|i| DEVICE_VECTOR_BASE + i as u64)
}

/// A device interrupt came in: its line is masked until its owner's EOI (it is
/// level-triggered: unmasked, it would fire again at once). Returns whether the vector
/// is a device's.
pub fn masked_on_entry(vector: u64) -> bool {
    match gsi_of(vector) {
        Some(gsi) => {
            ioapic::set_masked(gsi, vector, true);
            true
        }
        None => false,
    }
}

/// Remembers a device interrupt taken while the shim idled.
pub fn fired_while_idle(vector: u64) {
    if let Some(i) = device_of_vector(vector) {
        FIRED.fetch_or(1 << i, Ordering::Relaxed);
    }
}

/// The device vectors that fired while the shim idled; cleared.
pub fn take_fired() -> impl Iterator<Item = u64> {
    let bits = FIRED.swap(0, Ordering::Relaxed);
    (0..DEVICE_VECTORS)
        .filter(move |i| bits & (1 << i) != 0)
        .map(|i| DEVICE_VECTOR_BASE + i)
}
