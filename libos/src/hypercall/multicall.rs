//! `HYPERVISOR_multicall` (`xen.h`): a batch of hypercalls in one entry; each entry's
//! `result` holds that call's return value.

use xen_sys::*;

use super::{check, hypercall, XenError};

/// One multicall entry for hypercall `op` with up to six arguments.
pub fn multicall_entry(op: u32, args: [u64; 6]) -> multicall_entry {
    multicall_entry {
        op: u64::from(op),
        result: 0,
        args,
    }
}

/// Runs `calls`; the overall result says whether the batch itself was accepted, each
/// entry's `result` what its call returned.
pub fn multicall(calls: &mut [multicall_entry]) -> Result<(), XenError> {
    // SAFETY: the hypervisor reads and writes back `calls.len()` entries; the calls
    // themselves are the caller's (their pointers live as long as `calls`).
    check(unsafe { multicall_raw(calls.as_mut_ptr() as u64, calls.len() as u64) }).map(|_| ())
}

/// `multicall` with raw arguments.
///
/// # Safety
/// `list` must hold `count` entries (or be deliberately invalid).
pub unsafe fn multicall_raw(list: u64, count: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(__HYPERVISOR_multicall, list, count, 0, 0, 0) }
}
