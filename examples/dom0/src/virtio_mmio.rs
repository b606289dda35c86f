//! microvm's virtio-mmio transports as dom0 finds them: which windows hold a device
//! (its magic and a non-zero device id), and the GSI each interrupts on. The shim lets
//! dom0 map only the pages of present devices (-EPERM otherwise).

use alloc::vec::Vec;

use libos::device::Mmio;
use pv_core::microvm::{
    transport, transport_gsi, TRANSPORTS_WITHOUT, TRANSPORTS_WITH_IOAPIC2, VIRTIO_MMIO_MAGIC,
    VIRTIO_MMIO_SIZE,
};

const PAGE_SIZE: u64 = 4096;

/// A transport with a device behind it.
pub struct Window {
    /// Machine address of its registers (`VIRTIO_MMIO_SIZE` bytes).
    pub maddr: u64,
    pub gsi: u32,
    /// The virtio device id (1 network, 2 block, ...).
    pub device_id: u32,
}

/// Every transport with a device, in transport order.
pub fn windows() -> Vec<Window> {
    let mut found = Vec::new();
    let per_page = (PAGE_SIZE / VIRTIO_MMIO_SIZE) as usize;
    for first in (0..TRANSPORTS_WITH_IOAPIC2).step_by(per_page) {
        let Ok(page) = Mmio::map(transport(first), PAGE_SIZE) else {
            continue;
        };
        for i in first..first + per_page {
            let at = (transport(i) - transport(first)) as usize;
            // SAFETY: a virtio-mmio window in the mapped page; reading the magic and
            // the device id has no side effects.
            let (magic, id) = unsafe {
                let p = page.ptr().as_ptr().add(at) as *const u32;
                (p.read_volatile(), p.add(2).read_volatile())
            };
            if magic == VIRTIO_MMIO_MAGIC && id != 0 {
                found.push((i, id));
            }
        }
    }
    // QEMU fills the highest transports first: a device at 8 or above means 24.
    let transports = if found.iter().any(|&(i, _)| i >= TRANSPORTS_WITHOUT) {
        TRANSPORTS_WITH_IOAPIC2
    } else {
        TRANSPORTS_WITHOUT
    };
    found
        .into_iter()
        .map(|(i, device_id)| Window {
            maddr: transport(i),
            gsi: transport_gsi(i, transports),
            device_id,
        })
        .collect()
}
