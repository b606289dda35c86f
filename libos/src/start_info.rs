//! A safe copy of the `start_info` page (`xen.h`) the domain builder handed us.

use spin::Once;
use xen_sys::{start_info, SIF_INITDOMAIN, SIF_PRIVILEGED};

static START_INFO: Once<StartInfo> = Once::new();

pub struct StartInfo(start_info);

pub(crate) fn init(si: start_info) {
    START_INFO.call_once(|| StartInfo(si));
}

/// The start_info this domain booted with.
pub fn get() -> &'static StartInfo {
    START_INFO.get().expect("start_info is set before main")
}

fn c_str(bytes: &[core::ffi::c_char]) -> &str {
    // SAFETY: c_char and u8 have the same size and alignment.
    let bytes: &[u8] = unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("")
}

impl StartInfo {
    /// "xen-3.0-x86_64".
    pub fn magic(&self) -> &str {
        c_str(&self.0.magic)
    }
    pub fn nr_pages(&self) -> u64 {
        self.0.nr_pages
    }
    pub fn flags(&self) -> u32 {
        self.0.flags
    }
    pub fn privileged(&self) -> bool {
        self.0.flags & SIF_PRIVILEGED != 0
    }
    pub fn initial_domain(&self) -> bool {
        self.0.flags & SIF_INITDOMAIN != 0
    }
    pub fn cmdline(&self) -> &str {
        c_str(&self.0.cmd_line)
    }
    pub fn pt_base(&self) -> u64 {
        self.0.pt_base
    }
    pub fn nr_pt_frames(&self) -> u64 {
        self.0.nr_pt_frames
    }
    pub fn mfn_list(&self) -> u64 {
        self.0.mfn_list
    }
    pub fn shared_info_maddr(&self) -> u64 {
        self.0.shared_info
    }
    pub fn raw(&self) -> &start_info {
        &self.0
    }
}
