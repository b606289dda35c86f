//! The shared_info page (`xen.h`: `struct shared_info`), mapped at a page of our
//! image. Xen writes per-vCPU state there: `vcpu_info[n].arch.cr2` (the faulting
//! address of the last #PF delivered to us), event-channel bits and time.

use core::sync::atomic::{AtomicBool, Ordering};

use xen_sys::{shared_info, UVMF_INVLPG};

use crate::hypercall::{self, XenError};
use crate::paging::pte;

unsafe extern "C" {
    /// A page of our image that becomes the mapping of shared_info (see `start.rs`).
    static libos_shared_info_page: u8;
}

static MAPPED: AtomicBool = AtomicBool::new(false);

fn va() -> u64 {
    core::ptr::addr_of!(libos_shared_info_page) as u64
}

/// Maps shared_info (its machine address is `start_info.shared_info`) writable.
pub(crate) fn init(maddr: u64) -> Result<(), XenError> {
    hypercall::update_va_mapping(va(), (maddr & pte::ADDR_MASK) | pte::DATA_RW, UVMF_INVLPG)?;
    MAPPED.store(true, Ordering::Release);
    Ok(())
}

/// The shared_info page, once mapped.
pub fn get() -> Option<*mut shared_info> {
    MAPPED
        .load(Ordering::Acquire)
        .then(|| va() as *mut shared_info)
}

/// vCPU 0's `arch.cr2`, once shared_info is mapped.
pub fn cr2() -> Option<u64> {
    // SAFETY: the page is mapped (checked by `get`); Xen updates the field, so it is
    // read volatile.
    get().map(|si| unsafe { core::ptr::read_volatile(&raw const (*si).vcpu_info[0].arch.cr2) })
}
