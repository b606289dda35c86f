//! `HYPERVISOR_grant_table_op` (`xen/include/public/grant_table.h`), version 1: set up
//! our own table, map and unmap other domains' grants, copy through grants.
//!
//! Each operation takes an array; the hypercall's return value says whether the batch
//! ran, and each element's `status` (a `GNTST_*` code) whether that element worked.

use core::ffi::c_void;

use xen_sys::*;

use super::{check, hypercall, XenError};

/// A `GNTST_*` code other than `GNTST_okay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

impl GrantStatus {
    pub fn name(self) -> &'static str {
        match i32::from(self.0) {
            GNTST_general_error => "general_error",
            GNTST_bad_domain => "bad_domain",
            GNTST_bad_gntref => "bad_gntref",
            GNTST_bad_handle => "bad_handle",
            GNTST_bad_virt_addr => "bad_virt_addr",
            GNTST_bad_dev_addr => "bad_dev_addr",
            GNTST_no_device_space => "no_device_space",
            GNTST_permission_denied => "permission_denied",
            GNTST_bad_page => "bad_page",
            GNTST_bad_copy_arg => "bad_copy_arg",
            GNTST_address_too_big => "address_too_big",
            GNTST_eagain => "eagain",
            GNTST_no_space => "no_space",
            _ => "unknown",
        }
    }
}

impl core::fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GNTST_{} ({})", self.name(), self.0)
    }
}

/// Why a grant operation failed: the hypercall itself, or the element's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    Hypercall(XenError),
    Status(GrantStatus),
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Hypercall(e) => write!(f, "grant_table_op: {e}"),
            GrantError::Status(s) => write!(f, "{s}"),
        }
    }
}

fn status(s: i16) -> Result<(), GrantError> {
    if s == GNTST_okay as i16 {
        Ok(())
    } else {
        Err(GrantError::Status(GrantStatus(s)))
    }
}

/// `grant_table_op(cmd, ops, count)` with raw pointers (for callers that must pass
/// something deliberately wrong).
///
/// # Safety
/// `ops` must point to `count` structures of the kind `cmd` expects, valid for reads
/// and writes, and any guest handle inside them must be valid for what Xen does with it.
pub unsafe fn grant_table_op(cmd: u32, ops: *mut c_void, count: u32) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall(
            __HYPERVISOR_grant_table_op,
            u64::from(cmd),
            ops as u64,
            u64::from(count),
            0,
            0,
        )
    }
}

/// Runs `cmd` on the `ops` array.
fn op<T>(cmd: u32, ops: &mut [T]) -> Result<(), XenError> {
    // SAFETY: `ops` is an exclusively borrowed array of the structure `cmd` takes (each
    // wrapper below pairs them), holding no guest handles except those the wrapper set
    // up to outlive the call.
    check(unsafe { grant_table_op(cmd, ops.as_mut_ptr() as *mut c_void, ops.len() as u32) })
        .map(|_| ())
}

/// `GNTTABOP_setup_table`: makes our table `frames.len()` frames large and fills
/// `frames` with their machine frame numbers (a PV guest maps them itself).
pub fn setup_table(frames: &mut [xen_pfn_t]) -> Result<(), GrantError> {
    let mut a = [gnttab_setup_table {
        dom: DOMID_SELF as domid_t,
        nr_frames: frames.len() as u32,
        status: 0,
        frame_list: __guest_handle_xen_pfn_t {
            p: frames.as_mut_ptr(),
        },
    }];
    op(GNTTABOP_setup_table, &mut a).map_err(GrantError::Hypercall)?;
    status(a[0].status)
}

/// `GNTTABOP_query_size`: the table's current and largest size, in frames.
pub fn query_size(dom: domid_t) -> Result<(u32, u32), GrantError> {
    let mut a = [gnttab_query_size {
        dom,
        ..Default::default()
    }];
    op(GNTTABOP_query_size, &mut a).map_err(GrantError::Hypercall)?;
    status(a[0].status)?;
    Ok((a[0].nr_frames, a[0].max_nr_frames))
}

/// `GNTTABOP_set_version`: asks for grant-table ABI `version`; answers the version in use.
pub fn set_version(version: u32) -> Result<u32, XenError> {
    let mut a = [gnttab_set_version { version }];
    op(GNTTABOP_set_version, &mut a)?;
    Ok(a[0].version)
}

/// A grant of another domain mapped into our address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantMapping {
    pub host_addr: u64,
    pub handle: grant_handle_t,
    pub dev_bus_addr: u64,
}

/// `GNTTABOP_map_grant_ref` with `GNTMAP_host_map`: maps grant `gref` of domain `dom`
/// at `host_addr` (a page whose L1 table exists) in the current page tables.
pub fn map_grant_ref(
    host_addr: u64,
    dom: domid_t,
    gref: grant_ref_t,
    readonly: bool,
) -> Result<GrantMapping, GrantError> {
    let mut flags = GNTMAP_host_map;
    if readonly {
        flags |= GNTMAP_readonly;
    }
    map_grant_ref_raw(gnttab_map_grant_ref {
        host_addr,
        flags,
        ref_: gref,
        dom,
        ..Default::default()
    })
}

/// `GNTTABOP_map_grant_ref` of one element as given.
pub fn map_grant_ref_raw(m: gnttab_map_grant_ref) -> Result<GrantMapping, GrantError> {
    let mut a = [m];
    op(GNTTABOP_map_grant_ref, &mut a).map_err(GrantError::Hypercall)?;
    status(a[0].status)?;
    Ok(GrantMapping {
        host_addr: a[0].host_addr,
        handle: a[0].handle,
        dev_bus_addr: a[0].dev_bus_addr,
    })
}

/// `GNTTABOP_unmap_grant_ref`: undoes a mapping made at `host_addr` with `handle`.
pub fn unmap_grant_ref(host_addr: u64, handle: grant_handle_t) -> Result<(), GrantError> {
    let mut a = [gnttab_unmap_grant_ref {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 0,
    }];
    op(GNTTABOP_unmap_grant_ref, &mut a).map_err(GrantError::Hypercall)?;
    status(a[0].status)
}

/// `GNTTABOP_copy` of a batch; each element's `status` tells its outcome.
pub fn copy(ops: &mut [gnttab_copy]) -> Result<(), XenError> {
    op(GNTTABOP_copy, ops)
}
