//! The machine's devices as the hypervisor hands them to the control domain: their
//! MMIO frames registered with the frame table, their lines as pirqs
//! (`crate::devices`), interrupts passed to the line's owner, and the I/O APIC changes
//! the arch layer carries out.

use alloc::vec::Vec;

use super::Hypervisor;
use crate::common::event_channel as evtchn;
use crate::devices::{Device, Irqs, LineChange};
use crate::machine::Machine;
use crate::trap::device_of_vector;

impl<M: Machine> Hypervisor<M> {
    /// The machine's devices, before any domain is built: their MMIO frames become
    /// mappable by I/O-privileged domains, their lines pirqs (masked until bound).
    pub fn add_devices(&mut self, devices: &[Device]) {
        for d in devices {
            let frames = d.frames();
            self.frame_table.add_iomem(*frames.start(), *frames.end());
            log::info!(
                "device at {:#x} ({:#x} bytes), GSI {}: for the control domain",
                d.mmio_base,
                d.mmio_len,
                d.gsi
            );
        }
        self.devices.extend_from_slice(devices);
        self.irqs = Irqs::new(&self.devices);
    }

    /// A device's interrupt came in on `vector` (the arch layer masked its line and
    /// acknowledged the local APIC): the line's owner hears of it on its port.
    pub fn device_interrupt(&mut self, vector: u64) {
        let Some(dev) = device_of_vector(vector).and_then(|i| self.devices.get(i)) else {
            return;
        };
        if let Some((id, port)) = self.irqs.fired(dev.gsi) {
            match self.domains.get_mut(id) {
                Some(d) if !d.dead => evtchn::set_pending(&mut self.machine, d, port),
                // Gone without closing: the line stays masked.
                _ => self.irqs.unbind(dev.gsi),
            }
        }
    }

    /// What the arch layer must do to the I/O APIC's device lines, in order.
    pub fn take_line_changes(&mut self) -> Vec<LineChange> {
        self.irqs.take_changes()
    }
}
