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
