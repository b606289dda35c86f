//! `HYPERVISOR_memory_op` (`memory.h`): reservations and the machine-to-phys facts.

use xen_sys::*;

use super::{check, hypercall, XenError};

/// `memory_op(cmd, arg)` with a raw argument pointer.
///
/// # Safety
/// `arg` must point to what `cmd` expects (or be deliberately invalid).
pub unsafe fn memory_op_raw(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(__HYPERVISOR_memory_op, u64::from(cmd), arg, 0, 0, 0) }
}

/// `XENMEM_increase_reservation` / `decrease_reservation` / `populate_physmap` for
/// our own domain: `frames` holds the extents (in or out). Returns the number of
/// extents done.
pub fn reservation(
    cmd: u32,
    frames: &mut [xen_pfn_t],
    nr_extents: u64,
    extent_order: u32,
) -> Result<u64, XenError> {
    let mut r = xen_memory_reservation {
        extent_start: __guest_handle_xen_pfn_t {
            p: frames.as_mut_ptr(),
        },
        nr_extents: nr_extents.min(frames.len() as u64),
        extent_order,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    // SAFETY: `r` and the `frames` it points to live across the call.
    check(unsafe { memory_op_raw(cmd, &mut r as *mut _ as u64) }).map(|n| n as u64)
}

/// `XENMEM_current_reservation` / `maximum_reservation` (of `DOMID_SELF`) or
/// `XENMEM_maximum_ram_page` (no argument).
pub fn memory_query(cmd: u32) -> Result<u64, XenError> {
    let mut domid: domid_t = DOMID_SELF;
    // SAFETY: `domid` lives across the call; the commands only read it.
    check(unsafe { memory_op_raw(cmd, &mut domid as *mut _ as u64) }).map(|n| n as u64)
}

/// `XENMEM_machphys_mfn_list`: the machine frames of the M2P table's 2 MiB chunks
/// (written into `out`). Returns how many.
pub fn machphys_mfn_list(out: &mut [xen_pfn_t]) -> Result<u64, XenError> {
    let mut l = xen_machphys_mfn_list {
        max_extents: out.len() as u32,
        extent_start: __guest_handle_xen_pfn_t {
            p: out.as_mut_ptr(),
        },
        nr_extents: 0,
    };
    // SAFETY: `l` and `out` live across the call; at most `out.len()` are written.
    check(unsafe { memory_op_raw(XENMEM_machphys_mfn_list, &mut l as *mut _ as u64) })?;
    Ok(u64::from(l.nr_extents))
}

/// `XENMEM_exchange` of our frames `old` (extents of order `old_order`) for new ones
/// in extents of order `new_order`, whose first MFNs land in `new`. Both sides hold
/// the same number of pages. The old frames must be unmapped first; the new ones come
/// zeroed, with the old frames' pseudo-physical numbers in the M2P.
pub fn memory_exchange(
    old: &mut [xen_pfn_t],
    old_order: u32,
    new: &mut [xen_pfn_t],
    new_order: u32,
) -> Result<(), XenError> {
    let half = |list: &mut [xen_pfn_t], order| xen_memory_reservation {
        extent_start: __guest_handle_xen_pfn_t {
            p: list.as_mut_ptr(),
        },
        nr_extents: list.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    let mut x = xen_memory_exchange {
        in_: half(old, old_order),
        out: half(new, new_order),
        nr_exchanged: 0,
    };
    // SAFETY: `x` and both lists live across the call; Xen writes `new` and the count.
    check(unsafe { memory_op_raw(XENMEM_exchange, &mut x as *mut _ as u64) }).map(|_| ())
}
