//! The PV MMU hypercalls (`xen.h`): `mmu_update`, `update_va_mapping`, `mmuext_op`,
//! `vm_assist`. Page tables hold machine frame numbers and are read-only to the
//! guest; every change goes through these calls, which Xen validates.

use xen_sys::*;

use super::{check, hypercall, XenError};

/// `HYPERVISOR_mmu_update(reqs, count, &done, DOMID_SELF)`: applies `reqs` in order.
/// Returns how many were done; on error, `done` tells how far it got.
pub fn mmu_update(reqs: &[mmu_update]) -> Result<u64, (XenError, u64)> {
    let mut done: u32 = 0;
    // SAFETY: the hypervisor reads `reqs.len()` entries and writes `done`.
    let r = unsafe {
        mmu_update_raw(
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            &mut done as *mut u32 as u64,
            DOMID_SELF,
        )
    };
    check(r)
        .map(|_| u64::from(done))
        .map_err(|e| (e, u64::from(done)))
}

/// `mmu_update` with raw arguments (for callers that must pass odd pointers or counts).
///
/// # Safety
/// The hypervisor reads `count` requests at `reqs` and writes a `u32` at `done` (if
/// non-zero): both must be valid or deliberately invalid guest addresses.
pub unsafe fn mmu_update_raw(reqs: u64, count: u64, done: u64, domid: u16) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall(
            __HYPERVISOR_mmu_update,
            reqs,
            count,
            done,
            u64::from(domid),
            0,
        )
    }
}

/// `HYPERVISOR_update_va_mapping(va, pte, flags)`: sets the L1 entry that maps `va`
/// (`flags`: `UVMF_INVLPG`, `UVMF_TLB_FLUSH`, `UVMF_NONE`, `| UVMF_ALL`).
pub fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), XenError> {
    // SAFETY: no pointer arguments the hypervisor dereferences on our behalf; a change
    // to our own mappings is the caller's responsibility (see `mmu` docs).
    check(unsafe { hypercall(__HYPERVISOR_update_va_mapping, va, pte, flags, 0, 0) }).map(|_| ())
}

/// One `mmuext_op` with a frame argument (`MMUEXT_PIN_L*_TABLE`, `MMUEXT_UNPIN_TABLE`,
/// `MMUEXT_NEW_BASEPTR`, `MMUEXT_CLEAR_PAGE`...).
pub fn mmuext_mfn(cmd: u32, mfn: u64) -> mmuext_op {
    mmuext_op {
        cmd,
        arg1: mmuext_op__bindgen_ty_1 { mfn },
        arg2: mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    }
}

/// One `mmuext_op` with a linear address (`MMUEXT_INVLPG_LOCAL`, `MMUEXT_SET_LDT`...).
pub fn mmuext_va(cmd: u32, linear_addr: u64, nr_ents: u32) -> mmuext_op {
    mmuext_op {
        cmd,
        arg1: mmuext_op__bindgen_ty_1 { linear_addr },
        arg2: mmuext_op__bindgen_ty_2 { nr_ents },
    }
}

/// `HYPERVISOR_mmuext_op(ops, count, &done, DOMID_SELF)`.
pub fn mmuext_op(ops: &[mmuext_op]) -> Result<u64, (XenError, u64)> {
    let mut done: u32 = 0;
    // SAFETY: the hypervisor reads `ops.len()` entries and writes `done`.
    let r = unsafe {
        hypercall(
            __HYPERVISOR_mmuext_op,
            ops.as_ptr() as u64,
            ops.len() as u64,
            &mut done as *mut u32 as u64,
            u64::from(DOMID_SELF),
            0,
        )
    };
    check(r)
        .map(|_| u64::from(done))
        .map_err(|e| (e, u64::from(done)))
}

/// One `mmuext_op` on its own.
pub fn mmuext_one(op: mmuext_op) -> Result<(), XenError> {
    mmuext_op(&[op]).map(|_| ()).map_err(|(e, _)| e)
}

/// `HYPERVISOR_vm_assist(cmd, type)` (`VMASST_CMD_enable`/`disable`, `VMASST_TYPE_*`).
pub fn vm_assist(cmd: u32, kind: u32) -> Result<(), XenError> {
    // SAFETY: no pointer arguments.
    check(unsafe {
        hypercall(
            __HYPERVISOR_vm_assist,
            u64::from(cmd),
            u64::from(kind),
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}
