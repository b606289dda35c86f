//! `HYPERVISOR_domctl` and `HYPERVISOR_sysctl` (`domctl.h`, `sysctl.h`): the toolstack
//! operations of a privileged domain. Listing, pausing, unpausing and destroying
//! domains; every one is `-EPERM` for an unprivileged domain.
//!
//! Both interfaces are versioned (`XEN_DOMCTL_INTERFACE_VERSION`,
//! `XEN_SYSCTL_INTERFACE_VERSION`): a hypervisor of another version answers `-EACCES`.

use alloc::vec::Vec;
use core::fmt;

use xen_sys::tools::{
    __guest_handle_xen_domctl_getdomaininfo_t, xen_domctl, xen_domctl_getdomaininfo, xen_sysctl,
    xen_sysctl_getdomaininfolist, XEN_DOMCTL_destroydomain, XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, XEN_DOMINF_blocked, XEN_DOMINF_dying,
    XEN_DOMINF_paused, XEN_DOMINF_running, XEN_DOMINF_shutdown, XEN_DOMINF_shutdownmask,
    XEN_DOMINF_shutdownshift, XEN_SYSCTL_getdomaininfolist, XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SYSCTL_INTERFACE_VERSION,
};
use xen_sys::{__HYPERVISOR_domctl, __HYPERVISOR_sysctl, domid_t, SHUTDOWN_crash};

use super::{check, hypercall, XenError};

/// What `XEN_DOMCTL_getdomaininfo` says about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub domid: domid_t,
    /// The raw `XEN_DOMINF_*` flags (the fields below are decoded from them).
    pub flags: u32,
    /// Pages the domain holds, and its limit.
    pub tot_pages: u64,
    pub max_pages: u64,
    /// Machine frame of its `shared_info`.
    pub shared_info_frame: u64,
    /// Time its vCPUs have run, in nanoseconds.
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    pub max_vcpu_id: u32,
    /// Torn down: only the record is left until it is destroyed.
    pub dying: bool,
    /// `SHUTDOWN_*` reason, if it has shut down (a crash is `SHUTDOWN_crash`).
    pub shutdown_reason: Option<u32>,
    /// Paused by the toolstack.
    pub paused: bool,
    /// Every online vCPU waits for an event.
    pub blocked: bool,
    /// On a CPU now (with one CPU: the caller itself).
    pub running: bool,
}

impl From<&xen_domctl_getdomaininfo> for DomainInfo {
    fn from(i: &xen_domctl_getdomaininfo) -> Self {
        let f = i.flags;
        let has = |bit: u32| f & bit != 0;
        DomainInfo {
            domid: i.domain,
            flags: f,
            tot_pages: i.tot_pages,
            max_pages: i.max_pages,
            shared_info_frame: i.shared_info_frame,
            cpu_time: i.cpu_time,
            nr_online_vcpus: i.nr_online_vcpus,
            max_vcpu_id: i.max_vcpu_id,
            dying: has(XEN_DOMINF_dying),
            // The code field means something only with the shutdown flag (Xen keeps
            // ~0 there otherwise).
            shutdown_reason: has(XEN_DOMINF_shutdown)
                .then_some((f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask),
            paused: has(XEN_DOMINF_paused),
            blocked: has(XEN_DOMINF_blocked),
            running: has(XEN_DOMINF_running),
        }
    }
}

impl DomainInfo {
    /// Its memory in KiB.
    pub fn mem_kib(&self) -> u64 {
        self.tot_pages * 4
    }

    /// The state column of `xl list`: `r` running, `b` blocked, `p` paused, `s` shut
    /// down, `c` crashed, `d` dying; `-` where not.
    pub fn state(&self) -> State {
        let mut s = *b"------";
        let shutdown = self.shutdown_reason;
        for (i, on) in [
            self.running,
            self.blocked,
            self.paused,
            shutdown.is_some_and(|r| r != SHUTDOWN_crash),
            shutdown == Some(SHUTDOWN_crash),
            self.dying,
        ]
        .into_iter()
        .enumerate()
        {
            if on {
                s[i] = b"rbpscd"[i];
            }
        }
        State(s)
    }
}

/// `xl list`'s six-letter state, e.g. `-b----`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State(pub [u8; 6]);

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII letters and '-' are ever stored.
        f.pad(core::str::from_utf8(&self.0).unwrap_or("??????"))
    }
}

/// Issues a domctl; `op.interface_version` is set here.
pub fn domctl(op: &mut xen_domctl) -> Result<(), XenError> {
    op.interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    // SAFETY: `op` is a whole xen_domctl, live across the call; the hypervisor reads it
    // and writes at most that structure back.
    check(unsafe { hypercall(__HYPERVISOR_domctl, op as *mut _ as u64, 0, 0, 0, 0) }).map(|_| ())
}

/// Issues a sysctl; `op.interface_version` is set here.
///
/// # Safety
/// Guest handles inside `op` must point to memory valid for what the sub-op writes.
pub unsafe fn sysctl(op: &mut xen_sysctl) -> Result<(), XenError> {
    op.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    // SAFETY: `op` is live across the call; the handles are the caller's contract.
    check(unsafe { hypercall(__HYPERVISOR_sysctl, op as *mut _ as u64, 0, 0, 0, 0) }).map(|_| ())
}

fn simple(cmd: u32, domid: domid_t) -> Result<(), XenError> {
    let mut op = xen_domctl {
        cmd,
        domain: domid,
        ..Default::default()
    };
    domctl(&mut op)
}

/// `XEN_DOMCTL_getdomaininfo`. Xen 4.17 answers for the first domain whose id is at
/// least `domid` (look at the result's `domid`); later Xens only for `domid` itself.
pub fn getdomaininfo(domid: domid_t) -> Result<DomainInfo, XenError> {
    let mut op = xen_domctl {
        cmd: XEN_DOMCTL_getdomaininfo,
        domain: domid,
        ..Default::default()
    };
    domctl(&mut op)?;
    // SAFETY: getdomaininfo is the union member the hypervisor filled; all its fields
    // are plain integers, valid for any bit pattern.
    Ok(DomainInfo::from(unsafe { &op.u.getdomaininfo }))
}

/// `XEN_DOMCTL_getdomaininfo` for exactly `domid`: `None` if it does not exist.
pub fn domain_info(domid: domid_t) -> Result<Option<DomainInfo>, XenError> {
    match getdomaininfo(domid) {
        Ok(i) if i.domid == domid => Ok(Some(i)),
        Ok(_) | Err(XenError(ESRCH)) => Ok(None),
        Err(e) => Err(e),
    }
}

const ESRCH: i64 = xen_sys::XEN_ESRCH as i64;

/// `XEN_DOMCTL_pausedomain`: the domain gets no CPU until as many unpauses.
pub fn pause_domain(domid: domid_t) -> Result<(), XenError> {
    simple(XEN_DOMCTL_pausedomain, domid)
}

/// `XEN_DOMCTL_unpausedomain`.
pub fn unpause_domain(domid: domid_t) -> Result<(), XenError> {
    simple(XEN_DOMCTL_unpausedomain, domid)
}

/// `XEN_DOMCTL_destroydomain`: the domain is torn down and its record goes.
pub fn destroy_domain(domid: domid_t) -> Result<(), XenError> {
    simple(XEN_DOMCTL_destroydomain, domid)
}

/// `XEN_SYSCTL_getdomaininfolist`: fills `buf` with domains in id order from `first`;
/// returns how many.
pub fn getdomaininfolist(
    first: domid_t,
    buf: &mut [xen_domctl_getdomaininfo],
) -> Result<usize, XenError> {
    let mut op = xen_sysctl {
        cmd: XEN_SYSCTL_getdomaininfolist,
        ..Default::default()
    };
    op.u.getdomaininfolist = xen_sysctl_getdomaininfolist {
        first_domain: first,
        max_domains: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        buffer: __guest_handle_xen_domctl_getdomaininfo_t {
            p: buf.as_mut_ptr(),
        },
        num_domains: 0,
    };
    // SAFETY: the buffer holds max_domains records and outlives the call.
    unsafe { sysctl(&mut op)? };
    // SAFETY: the member the hypervisor filled; plain integers and a pointer we set.
    let n = unsafe { op.u.getdomaininfolist.num_domains } as usize;
    Ok(n.min(buf.len()))
}

/// Every domain, in id order.
pub fn list_domains() -> Result<Vec<DomainInfo>, XenError> {
    const BATCH: usize = 16;
    let mut out = Vec::new();
    let mut buf = [xen_domctl_getdomaininfo::default(); BATCH];
    let mut first: domid_t = 0;
    loop {
        let n = getdomaininfolist(first, &mut buf)?;
        out.extend(buf[..n].iter().map(DomainInfo::from));
        match buf[..n].last() {
            Some(last) if n == BATCH => first = last.domain.saturating_add(1),
            _ => return Ok(out),
        }
    }
}
