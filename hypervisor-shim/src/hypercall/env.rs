//! What every hypercall works with: the [`Env`] the shim lends it, the [`Effects`] it
//! leaves for the shim to act on, the errno encoding and continuations.

use crate::devices::Irqs;
use crate::domain::{Domain, Domains};
use crate::machine::{GuestMemory, Machine};
use crate::mm::Mm;
use crate::time::Clock;

/// What the shim gives hypercalls besides the calling domain.
pub struct Env<'a, M: Machine + ?Sized> {
    pub machine: &'a mut M,
    /// Where `console_io` output goes (the serial line).
    pub console: &'a mut dyn FnMut(&[u8]),
    /// The shim's own command line (`XENVER_commandline`).
    pub cmdline: &'a str,
    /// Frame table, allocator and M2P for the memory hypercalls.
    pub mm: Mm<'a>,
    /// Every other domain (the caller is taken out while its hypercall runs).
    pub domains: &'a mut Domains,
    pub clock: &'a Clock,
    /// The device interrupt lines (`physdev_op`, `EVTCHNOP_bind_pirq`).
    pub irqs: &'a mut Irqs,
    /// What the hypercall changed beyond the caller, for the shim to act on after it.
    pub effects: Effects,
}

/// Consequences of a hypercall that the shim handles once it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Run the scheduler: another domain woke or changed state, the caller yielded or
    /// changed its timers.
    pub resched: bool,
}

impl<M: Machine + ?Sized> Env<'_, M> {
    pub(super) fn guest(&mut self, dom: &Domain) -> GuestMemory<'_, M> {
        GuestMemory {
            machine: &mut *self.machine,
            l4: dom.l4,
        }
    }

    /// System time now (ns).
    pub fn now(&self) -> u64 {
        self.clock.ns_at(self.machine.tsc())
    }
}

/// RAX for errno `e` (tests compare results with it).
#[cfg(test)]
pub(crate) fn err(e: xen_sys::xen_errno) -> i64 {
    -(e as i64)
}

/// Preempts hypercall `nr` (Xen's `hypercall_create_continuation`): the guest re-executes
/// the 2-byte SYSCALL with the first arguments replaced by `args`; the returned value
/// (the hypercall number) goes into RAX.
pub(crate) fn continuation(dom: &mut Domain, nr: u32, args: &[u64]) -> i64 {
    let r = &mut dom.regs;
    r.rip = r.rip.wrapping_sub(2);
    for (reg, &v) in [&mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8]
        .into_iter()
        .zip(args)
    {
        *reg = v;
    }
    nr as i64
}
