//! The machine's devices that the control domain drives, as a Xen dom0 does: their MMIO
//! frames (which only an I/O-privileged domain may map, `iomem_access_permitted`) and
//! their interrupt lines, routed to it as physical IRQs on event channels (Xen's
//! `struct pirq` and the `ACKTYPE_UNMASK` handling of level-triggered I/O APIC lines in
//! xen/arch/x86/irq.c: `map_domain_pirq`, `pirq_guest_bind`, `__do_IRQ_guest`,
//! `pirq_guest_eoi`).
//!
//! A line is level-triggered (virtio-mmio's is: it stays high until the driver
//! acknowledges the device): when it fires the shim masks it at the I/O APIC and marks
//! it in flight; the guest's `PHYSDEVOP_eoi` unmasks it, and if the device still wants
//! attention it fires again. A line nobody is bound to stays masked. What the arch layer
//! must do to the I/O APIC is queued here ([`Irqs::take_changes`]): this module never
//! touches hardware.
//!
//! The pirq of a line is its GSI, as Xen numbers the hardware domain's GSI pirqs.

use alloc::vec::Vec;

use xen_sys::{domid_t, evtchn_port_t};

use crate::machine::{Mfn, PAGE_SHIFT};

/// GSIs of the machine (microvm's two I/O APICs: Xen's `nr_irqs_gsi`).
pub const NR_GSIS: u32 = 48;

/// A domain's pirq numbers, `0..nr_pirqs` (Xen's `d->nr_pirqs`: the GSIs plus
/// `extra_domU_irqs`, 32, for a domU; the shim gives the hardware domain 256 extra, a
/// fixed stand-in for Xen's per-CPU count). Beyond it every pirq operation is -EINVAL.
pub fn nr_pirqs(privileged: bool) -> u32 {
    NR_GSIS + if privileged { 256 } else { 32 }
}

/// One device: an MMIO window and the GSI its interrupt arrives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub mmio_base: u64,
    pub mmio_len: u64,
    pub gsi: u32,
}

impl Device {
    /// The machine frames of the MMIO window.
    pub fn frames(&self) -> core::ops::RangeInclusive<Mfn> {
        let last = self.mmio_base + self.mmio_len.max(1) - 1;
        (self.mmio_base >> PAGE_SHIFT)..=(last >> PAGE_SHIFT)
    }
}

/// What the I/O APIC must do to a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineChange {
    Mask(u32),
    Unmask(u32),
}

/// A device line and who has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub gsi: u32,
    /// The domain that mapped the line (`PHYSDEVOP_map_pirq`).
    pub owner: Option<domid_t>,
    /// The owner's event channel for it (`EVTCHNOP_bind_pirq`), 0 for none.
    pub port: evtchn_port_t,
    /// Delivered and masked, waiting for the owner's EOI.
    pub in_flight: bool,
    /// Masked at the I/O APIC (as far as the queued changes go).
    pub masked: bool,
}

/// An operation on a line that Xen refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// No device line has this number (-EINVAL).
    NoSuchLine,
    /// Another domain has it (-EBUSY).
    Taken,
    /// The caller has not mapped it (-EINVAL).
    NotMapped,
    /// Already bound to a port (-EEXIST, as `evtchn_bind_pirq` answers).
    Bound,
}

/// Every device line of the machine.
#[derive(Clone, Debug, Default)]
pub struct Irqs {
    lines: Vec<Line>,
    changes: Vec<LineChange>,
}

impl Irqs {
    /// Lines for the devices' GSIs, all masked.
    pub fn new(devices: &[Device]) -> Self {
        let mut lines: Vec<Line> = devices
            .iter()
            .map(|d| Line {
                gsi: d.gsi,
                owner: None,
                port: 0,
                in_flight: false,
                masked: true,
            })
            .collect();
        lines.sort_by_key(|l| l.gsi);
        lines.dedup_by_key(|l| l.gsi);
        Irqs {
            lines,
            changes: Vec::new(),
        }
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn line(&self, gsi: u32) -> Option<&Line> {
        self.lines.iter().find(|l| l.gsi == gsi)
    }

    fn line_mut(&mut self, gsi: u32) -> Result<&mut Line, IrqError> {
        self.lines
            .iter_mut()
            .find(|l| l.gsi == gsi)
            .ok_or(IrqError::NoSuchLine)
    }

    fn set_masked(&mut self, gsi: u32, masked: bool) {
        if let Ok(l) = self.line_mut(gsi) {
            if l.masked != masked {
                l.masked = masked;
                self.changes.push(if masked {
                    LineChange::Mask(gsi)
                } else {
                    LineChange::Unmask(gsi)
                });
            }
        }
    }

    /// `PHYSDEVOP_map_pirq` of a GSI: the line becomes `d`'s (again, if it was).
    /// Returns the pirq.
    pub fn map(&mut self, d: domid_t, gsi: u32) -> Result<u32, IrqError> {
        let l = self.line_mut(gsi)?;
        match l.owner {
            Some(o) if o != d => Err(IrqError::Taken),
            _ => {
                l.owner = Some(d);
                Ok(gsi)
            }
        }
    }

    /// `PHYSDEVOP_unmap_pirq`: the line is free and masked.
    pub fn unmap(&mut self, d: domid_t, pirq: u32) -> Result<(), IrqError> {
        let l = self.line_mut(pirq)?;
        if l.owner != Some(d) {
            return Err(IrqError::NotMapped);
        }
        *l = Line {
            owner: None,
            port: 0,
            in_flight: false,
            ..*l
        };
        self.set_masked(pirq, true);
        Ok(())
    }

    /// `EVTCHNOP_bind_pirq`: `port` hears of the line, which is unmasked.
    pub fn bind(&mut self, d: domid_t, pirq: u32, port: evtchn_port_t) -> Result<(), IrqError> {
        let l = self.line_mut(pirq)?;
        if l.owner != Some(d) {
            return Err(IrqError::NotMapped);
        }
        if l.port != 0 {
            return Err(IrqError::Bound);
        }
        l.port = port;
        l.in_flight = false;
        self.set_masked(pirq, false);
        Ok(())
    }

    /// Whether `d` may bind `pirq` (checked before a port is allocated for it).
    pub fn can_bind(&self, d: domid_t, pirq: u32) -> Result<(), IrqError> {
        let l = self.line(pirq).ok_or(IrqError::NoSuchLine)?;
        match (l.owner, l.port) {
            (o, _) if o != Some(d) => Err(IrqError::NotMapped),
            (_, 0) => Ok(()),
            _ => Err(IrqError::Bound),
        }
    }

    /// The owner closed the line's port (or died): masked until bound again.
    pub fn unbind(&mut self, gsi: u32) {
        if let Ok(l) = self.line_mut(gsi) {
            l.port = 0;
            l.in_flight = false;
        }
        self.set_masked(gsi, true);
    }

    /// Domain `d` is gone: its lines are free and masked.
    pub fn release_domain(&mut self, d: domid_t) {
        let mine: Vec<u32> = self
            .lines
            .iter()
            .filter(|l| l.owner == Some(d))
            .map(|l| l.gsi)
            .collect();
        for gsi in mine {
            let _ = self.unmap(d, gsi);
        }
    }

    /// The line fired (the arch layer masked it at the I/O APIC already, so the queued
    /// state agrees without a change). Returns the domain and port to notify, if the
    /// line is bound; an unbound line stays masked.
    pub fn fired(&mut self, gsi: u32) -> Option<(domid_t, evtchn_port_t)> {
        let l = self.line_mut(gsi).ok()?;
        l.masked = true;
        match (l.owner, l.port) {
            (Some(d), port) if port != 0 => {
                l.in_flight = true;
                Some((d, port))
            }
            _ => None,
        }
    }

    /// `PHYSDEVOP_eoi`: the owner handled the interrupt; the line is unmasked if it was
    /// in flight (an EOI of a line that is not is harmless, as in Xen).
    pub fn eoi(&mut self, d: domid_t, pirq: u32) -> Result<(), IrqError> {
        let l = self.line_mut(pirq)?;
        if l.owner != Some(d) {
            return Err(IrqError::NotMapped);
        }
        if l.in_flight && l.port != 0 {
            l.in_flight = false;
            self.set_masked(pirq, false);
        }
        Ok(())
    }

    /// Whether the I/O APIC has anything to do (checked on every return to a guest).
    #[inline]
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// What the I/O APIC must do, in order; emptied.
    pub fn take_changes(&mut self) -> Vec<LineChange> {
        core::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Irqs {
        let dev = |gsi| Device {
            mmio_base: 0xfeb0_0000 + u64::from(gsi) * 0x200,
            mmio_len: 0x200,
            gsi,
        };
        Irqs::new(&[dev(47), dev(46)])
    }

    #[test]
    fn device_frames_cover_the_window() {
        let d = Device {
            mmio_base: 0xfeb0_0e00,
            mmio_len: 0x200,
            gsi: 5,
        };
        assert_eq!(d.frames(), 0xfeb00..=0xfeb00);
        let d = Device {
            mmio_base: 0xfeb0_0f00,
            mmio_len: 0x200,
            gsi: 5,
        };
        assert_eq!(d.frames(), 0xfeb00..=0xfeb01);
    }

    #[test]
    fn a_bound_line_fires_once_per_eoi() {
        let mut irqs = two();
        assert_eq!(irqs.lines().len(), 2);
        assert_eq!(irqs.map(0, 47), Ok(47));
        assert_eq!(irqs.map(0, 47), Ok(47), "mapping again is allowed");
        assert_eq!(irqs.fired(47), None, "unbound: stays masked");
        irqs.bind(0, 47, 9).unwrap();
        assert_eq!(irqs.take_changes(), [LineChange::Unmask(47)]);
        assert_eq!(irqs.fired(47), Some((0, 9)));
        assert!(irqs.line(47).unwrap().in_flight);
        assert_eq!(irqs.take_changes(), []);
        irqs.eoi(0, 47).unwrap();
        assert_eq!(irqs.take_changes(), [LineChange::Unmask(47)]);
        irqs.eoi(0, 47).unwrap();
        assert_eq!(irqs.take_changes(), [], "a second EOI changes nothing");
        irqs.unbind(47);
        assert_eq!(irqs.take_changes(), [LineChange::Mask(47)]);
        assert_eq!(irqs.fired(47), None);
    }

    #[test]
    fn lines_belong_to_one_domain() {
        let mut irqs = two();
        assert_eq!(irqs.map(0, 5), Err(IrqError::NoSuchLine));
        irqs.map(0, 46).unwrap();
        assert_eq!(irqs.map(3, 46), Err(IrqError::Taken));
        assert_eq!(irqs.bind(3, 46, 4), Err(IrqError::NotMapped));
        assert_eq!(irqs.eoi(3, 46), Err(IrqError::NotMapped));
        assert_eq!(irqs.unmap(3, 46), Err(IrqError::NotMapped));
        irqs.bind(0, 46, 4).unwrap();
        assert_eq!(irqs.can_bind(0, 46), Err(IrqError::Bound));
        assert_eq!(irqs.bind(0, 46, 5), Err(IrqError::Bound));
        irqs.release_domain(0);
        assert_eq!(irqs.line(46).unwrap().owner, None);
        assert!(irqs.line(46).unwrap().masked);
        assert_eq!(irqs.map(3, 46), Ok(46));
    }
}
