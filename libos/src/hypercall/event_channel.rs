//! `HYPERVISOR_event_channel_op` (`xen/include/public/event_channel.h`): every operation
//! of the 2-level event-channel ABI. Ports are `evtchn_port_t`; `DOMID_SELF` names the
//! calling domain wherever a domain is asked for.

use core::ffi::c_void;

use xen_sys::*;

use super::{check, hypercall, XenError};

/// An event-channel port number.
pub type Port = evtchn_port_t;

/// `event_channel_op(cmd, arg)` with a raw argument pointer (for callers that must pass
/// something deliberately wrong).
///
/// # Safety
/// `arg` must point to the structure `cmd` expects, valid for reads and writes.
pub unsafe fn event_channel_op(cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall(
            __HYPERVISOR_event_channel_op,
            u64::from(cmd),
            arg as u64,
            0,
            0,
            0,
        )
    }
}

/// Issues `cmd` on `arg` (one of the `evtchn_*` structures), which Xen may write back.
fn op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: `arg` is the structure for `cmd` (each wrapper below pairs them), alive and
    // exclusively borrowed across the call.
    check(unsafe { event_channel_op(cmd, arg as *mut T as *mut c_void) }).map(|_| ())
}

/// `EVTCHNOP_alloc_unbound`: a fresh port of domain `dom` (`DOMID_SELF`, or another
/// domain for a privileged caller) that `remote_dom` may later bind to.
pub fn evtchn_alloc_unbound(dom: domid_t, remote_dom: domid_t) -> Result<Port, XenError> {
    let mut a = evtchn_alloc_unbound {
        dom,
        remote_dom,
        port: 0,
    };
    op(EVTCHNOP_alloc_unbound, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain`: connects a fresh local port to `remote_port` of
/// `remote_dom`, which must be unbound and allocated for us.
pub fn evtchn_bind_interdomain(remote_dom: domid_t, remote_port: Port) -> Result<Port, XenError> {
    let mut a = evtchn_bind_interdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    op(EVTCHNOP_bind_interdomain, &mut a)?;
    Ok(a.local_port)
}

/// `EVTCHNOP_bind_virq`: a port that receives virtual IRQ `virq` (`VIRQ_*`) of `vcpu`.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<Port, XenError> {
    let mut a = evtchn_bind_virq {
        virq,
        vcpu,
        port: 0,
    };
    op(EVTCHNOP_bind_virq, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_pirq`: a port that hears of physical IRQ `pirq` (mapped first with
/// `map_gsi_pirq`).
pub fn evtchn_bind_pirq(pirq: u32) -> Result<Port, XenError> {
    let mut a = evtchn_bind_pirq {
        pirq,
        flags: 0,
        port: 0,
    };
    op(EVTCHNOP_bind_pirq, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_ipi`: a port for inter-processor events to `vcpu`.
pub fn evtchn_bind_ipi(vcpu: u32) -> Result<Port, XenError> {
    let mut a = evtchn_bind_ipi { vcpu, port: 0 };
    op(EVTCHNOP_bind_ipi, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_send`: an event to the other end of `port`.
pub fn evtchn_send(port: Port) -> Result<(), XenError> {
    op(EVTCHNOP_send, &mut evtchn_send { port })
}

/// `EVTCHNOP_close`: closes `port`; an interdomain peer's end becomes unbound.
pub fn evtchn_close(port: Port) -> Result<(), XenError> {
    op(EVTCHNOP_close, &mut evtchn_close { port })
}

/// `EVTCHNOP_unmask`: clears `port`'s mask bit; Xen re-delivers an event that became
/// pending while it was masked.
pub fn evtchn_unmask(port: Port) -> Result<(), XenError> {
    op(EVTCHNOP_unmask, &mut evtchn_unmask { port })
}

/// `EVTCHNOP_bind_vcpu`: delivers `port`'s events to `vcpu` from now on.
pub fn evtchn_bind_vcpu(port: Port, vcpu: u32) -> Result<(), XenError> {
    op(EVTCHNOP_bind_vcpu, &mut evtchn_bind_vcpu { port, vcpu })
}

/// `EVTCHNOP_reset`: closes every port of `dom` (`DOMID_SELF` or, privileged, another).
pub fn evtchn_reset(dom: domid_t) -> Result<(), XenError> {
    op(EVTCHNOP_reset, &mut evtchn_reset { dom })
}

/// What a port is connected to (`EVTCHNSTAT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Closed,
    /// Allocated, waiting for `remote_dom` to bind.
    Unbound {
        remote_dom: domid_t,
    },
    Interdomain {
        dom: domid_t,
        port: Port,
    },
    Pirq(u32),
    Virq(u32),
    Ipi,
}

/// `EVTCHNOP_status`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The vCPU the port notifies.
    pub vcpu: u32,
    pub state: ChannelState,
}

/// `EVTCHNOP_status`: the state of `port` of domain `dom`.
pub fn evtchn_status(dom: domid_t, port: Port) -> Result<ChannelStatus, XenError> {
    let mut a = evtchn_status {
        dom,
        port,
        ..Default::default()
    };
    op(EVTCHNOP_status, &mut a)?;
    // SAFETY (for the union reads below): `status` says which member Xen filled; all
    // members are plain integers, so any bit pattern is a valid value.
    let state = match a.status {
        EVTCHNSTAT_closed => ChannelState::Closed,
        EVTCHNSTAT_unbound => ChannelState::Unbound {
            // SAFETY: see above.
            remote_dom: unsafe { a.u.unbound.dom },
        },
        EVTCHNSTAT_interdomain => {
            // SAFETY: see above.
            let i = unsafe { a.u.interdomain };
            ChannelState::Interdomain {
                dom: i.dom,
                port: i.port,
            }
        }
        // SAFETY: see above.
        EVTCHNSTAT_pirq => ChannelState::Pirq(unsafe { a.u.pirq }),
        // SAFETY: see above.
        EVTCHNSTAT_virq => ChannelState::Virq(unsafe { a.u.virq }),
        EVTCHNSTAT_ipi => ChannelState::Ipi,
        _ => return Err(XenError(i64::from(XEN_EINVAL))),
    };
    Ok(ChannelStatus {
        vcpu: a.vcpu,
        state,
    })
}
