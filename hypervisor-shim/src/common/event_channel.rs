//! Event delivery and closing, 2-level ABI (`event_channel.h`; Xen's
//! xen/common/event_channel.c and event_2l.c): the pending and mask bitmaps in the
//! guest's `shared_info`, the selector and upcall flags in its `vcpu_info`, binding
//! and closing channels between domains.
//!
//! The bitmaps are guest memory, read and written through the machine; the guest can
//! change them at any moment, so nothing here trusts what it reads back: a bit is only
//! ever a hint to deliver or not.

use core::mem::offset_of;

use xen_sys::*;

use crate::domain::lookup::this_or_caller;
use crate::domain::{Domain, Domains};
use crate::machine::{test_and_clear, test_and_set, test_bit, Machine};
use crate::state::evtchn::Binding;
use crate::state::vcpu::VcpuInfoAt;
use xen_sys::domid_t;
use xen_sys::evtchn_port_t;

const WORD_BITS: u32 = 64;
const PENDING: usize = offset_of!(shared_info, evtchn_pending);
const MASK: usize = offset_of!(shared_info, evtchn_mask);

pub fn is_pending<M: Machine + ?Sized>(m: &M, dom: &Domain, port: evtchn_port_t) -> bool {
    test_bit(m, dom.shared_info, PENDING, port)
}

pub fn is_masked<M: Machine + ?Sized>(m: &M, dom: &Domain, port: evtchn_port_t) -> bool {
    test_bit(m, dom.shared_info, MASK, port)
}

pub fn clear_pending<M: Machine + ?Sized>(m: &mut M, dom: &Domain, port: evtchn_port_t) {
    test_and_clear(m, dom.shared_info, PENDING, port);
}

/// `evtchn_2l_set_pending`: marks `port` pending and, unless it is masked, raises the
/// vCPU's selector bit and `evtchn_upcall_pending`; wakes the vCPU if it blocked or
/// polls this port.
pub fn set_pending<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, port: evtchn_port_t) {
    if port >= dom.evtchn.max_ports() || test_and_set(m, dom.shared_info, PENDING, port) {
        return;
    }
    if !is_masked(m, dom, port) && !dom.vcpu_info.test_and_set_sel(m, port / WORD_BITS) {
        mark_events_pending(m, dom);
    }
    if dom.sched.polls(port) {
        dom.sched.wake();
    }
}

/// `vcpu_mark_events_pending`: raises `evtchn_upcall_pending` and kicks the vCPU.
fn mark_events_pending<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) {
    let vi = dom.vcpu_info;
    if vi.read_u8(m, VcpuInfoAt::UPCALL_PENDING) == Some(0) {
        vi.write_u8(m, VcpuInfoAt::UPCALL_PENDING, 1);
    }
    dom.sched.wake();
}

/// `evtchn_2l_unmask`: clears the mask bit and re-raises an event that became pending
/// while it was masked.
pub fn unmask<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, port: evtchn_port_t) {
    if test_and_clear(m, dom.shared_info, MASK, port)
        && is_pending(m, dom, port)
        && !dom.vcpu_info.test_and_set_sel(m, port / WORD_BITS)
    {
        mark_events_pending(m, dom);
    }
}

/// Raises `virq` for the domain if it bound a port to it.
pub fn send_virq<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, virq: u32) {
    if let Some(&port) = dom.evtchn.virqs.get(virq as usize) {
        if port != 0 {
            set_pending(m, dom, port);
        }
    }
}

/// Whether an upcall is due: `evtchn_upcall_pending` set and `evtchn_upcall_mask` clear
/// (Xen's `local_events_need_delivery`).
pub fn upcall_due<M: Machine + ?Sized>(m: &M, dom: &Domain) -> bool {
    let vi = dom.vcpu_info;
    vi.read_u8(m, VcpuInfoAt::UPCALL_PENDING)
        .is_some_and(|p| p != 0)
        && vi.read_u8(m, VcpuInfoAt::UPCALL_MASK) == Some(0)
}

/// Binds a new local port to `rport` of `rdom`, which must be left unbound for the
/// caller; `rdom` may be the caller itself (a loopback channel).
pub fn bind_interdomain<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    others: &mut Domains,
    rdom: domid_t,
    rport: evtchn_port_t,
) -> Result<evtchn_port_t, xen_errno> {
    let rdom = if rdom == DOMID_SELF { dom.id } else { rdom };
    let me = dom.id;
    let rd = this_or_caller(dom, others, rdom).ok_or(XEN_ESRCH)?;
    if !rd.evtchn.is_valid(rport)
        || rd.evtchn.get(rport).map(|c| c.binding) != Some(Binding::Unbound { remote: me })
    {
        return Err(XEN_EINVAL);
    }
    let lport = dom
        .evtchn
        .alloc(Binding::Interdomain {
            remote: rdom,
            port: rport,
        })
        .ok_or(XEN_ENOSPC)?;
    if let Some(c) = this_or_caller(dom, others, rdom).and_then(|d| d.evtchn.get_mut(rport)) {
        c.binding = Binding::Interdomain {
            remote: me,
            port: lport,
        };
    }
    // As Xen (and as Linux expects): the new local port starts pending.
    set_pending(m, dom, lport);
    Ok(lport)
}

/// `evtchn_send`: raises the event at the other end of `port`. `Ok(true)` when that
/// woke another domain (the scheduler should decide who runs).
pub fn send<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    others: &mut Domains,
    port: evtchn_port_t,
) -> Result<bool, xen_errno> {
    if !dom.evtchn.is_valid(port) {
        return Err(XEN_EINVAL);
    }
    let me = dom.id;
    match dom.evtchn.get(port).map(|c| c.binding) {
        Some(Binding::Interdomain {
            remote,
            port: rport,
        }) => {
            if let Some(rd) = this_or_caller(dom, others, remote) {
                let was_ready = rd.ready();
                set_pending(m, rd, rport);
                return Ok(remote != me && !was_ready && rd.ready());
            }
            Ok(false)
        }
        Some(Binding::Ipi) => {
            set_pending(m, dom, port);
            Ok(false)
        }
        // Nobody bound yet: the event is dropped, as in Xen.
        Some(Binding::Unbound { .. }) => Ok(false),
        _ => Err(XEN_EINVAL),
    }
}

/// Closes `port` of `dom` (`evtchn_close`): the peer's end of an interdomain channel
/// goes back to unbound (for `dom`), and a pending event on the port is cleared so a
/// later binding starts clean.
pub fn close<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    others: &mut Domains,
    port: evtchn_port_t,
) -> Result<(), xen_errno> {
    close_with(m, dom, others, None, port)
}

fn close_with<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    others: &mut Domains,
    extra: Option<&mut Domain>,
    port: evtchn_port_t,
) -> Result<(), xen_errno> {
    if !dom.evtchn.is_valid(port) {
        return Err(XEN_EINVAL);
    }
    match dom.evtchn.get(port).map(|c| c.binding) {
        None | Some(Binding::Free | Binding::Reserved) => return Err(XEN_EINVAL),
        Some(Binding::Interdomain {
            remote,
            port: rport,
        }) => {
            let me = dom.id;
            let unbind = |d: &mut Domain| {
                if let Some(c) = d.evtchn.get_mut(rport) {
                    if c.binding == (Binding::Interdomain { remote: me, port }) {
                        c.binding = Binding::Unbound { remote: me };
                    }
                }
            };
            if let Some(d) = extra.filter(|d| d.id == remote) {
                unbind(d);
            } else if let Some(d) = this_or_caller(dom, others, remote) {
                unbind(d);
            }
        }
        Some(_) => {}
    }
    dom.evtchn.release(port);
    clear_pending(m, dom, port);
    Ok(())
}

/// Closes every port of `dom` (`EVTCHNOP_reset`, and a dying domain's teardown).
pub fn close_all_ports<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, others: &mut Domains) {
    close_all_ports_with(m, dom, others, None);
}

pub fn close_all_ports_with<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    others: &mut Domains,
    mut extra: Option<&mut Domain>,
) {
    let ports: alloc::vec::Vec<evtchn_port_t> = dom.evtchn.in_use().map(|(p, _)| p).collect();
    for p in ports {
        let _ = close_with(m, dom, others, extra.as_deref_mut(), p);
    }
}
