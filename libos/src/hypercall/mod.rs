//! Hypercalls through the hypercall page the hypervisor fills (`XEN_ELFNOTE_HYPERCALL_PAGE`):
//! 32 bytes per call, arguments in RDI, RSI, RDX, R10, R8; result in RAX.

use core::arch::{asm, global_asm};
use core::mem::size_of;

use xen_sys::*;

mod domctl;
mod event_channel;
mod grant_table;
mod hvm;
mod memory;
mod mmu;
mod multicall;
mod physdev;
mod sched;
mod timer;
mod traps;
mod vcpu;

pub use domctl::*;
pub use event_channel::*;
pub use grant_table::*;
pub use hvm::*;
pub use memory::*;
pub use mmu::*;
pub use multicall::*;
pub use physdev::*;
pub use sched::*;
pub use timer::*;
pub use traps::*;
pub use vcpu::*;

global_asm!(
    ".pushsection .text.hypercall_page, \"ax\"",
    ".balign 4096",
    ".global hypercall_page",
    "hypercall_page:",
    ".fill 4096, 1, 0xcc",
    ".popsection",
);

unsafe extern "C" {
    static hypercall_page: [u8; 4096];
}

pub(crate) fn entry(nr: u32) -> usize {
    // Only the address is taken; the page itself is the hypervisor's to fill.
    core::ptr::addr_of!(hypercall_page) as usize + nr as usize * 32
}

/// Issues hypercall `nr` with up to five arguments.
///
/// # Safety
/// Pointers among the arguments must be valid for what the hypercall does with them.
pub unsafe fn hypercall(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the hypercall page stubs preserve everything but RAX and the argument
    // registers (declared clobbered); memory effects are the caller's contract.
    unsafe {
        asm!(
            "call {f}",
            f = in(reg) entry(nr),
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// A Xen error code (the positive `XEN_E*` value of a negative return).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The symbolic name of the code (`EINVAL`...), for diagnostics.
    pub fn name(self) -> &'static str {
        crate::errno::name(self.0)
    }
}

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "-{} {}", self.0, self.name())
    }
}

/// A raw hypercall return value as `Ok(non-negative)` or `Err(XenError)`.
pub fn check(ret: i64) -> Result<i64, XenError> {
    if ret < 0 {
        Err(XenError(-ret))
    } else {
        Ok(ret)
    }
}

/// Writes bytes to the hypervisor console.
pub fn console_write(bytes: &[u8]) -> Result<(), XenError> {
    // SAFETY: the hypervisor only reads `bytes.len()` bytes from the slice.
    let r = unsafe {
        hypercall(
            __HYPERVISOR_console_io,
            CONSOLEIO_write as u64,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    };
    check(r).map(|_| ())
}

/// `console_io(CONSOLEIO_read)`: what was typed on the hypervisor's console since the
/// last read (control domain only). Returns the bytes read.
pub fn console_read(buf: &mut [u8]) -> Result<usize, XenError> {
    // SAFETY: the hypervisor writes at most `buf.len()` bytes into the slice.
    let r = unsafe {
        hypercall(
            __HYPERVISOR_console_io,
            CONSOLEIO_read as u64,
            buf.len() as u64,
            buf.as_mut_ptr() as u64,
            0,
            0,
        )
    };
    check(r).map(|n| n as usize)
}

/// `XENVER_version`: (major, minor).
pub fn xen_version() -> (u32, u32) {
    // SAFETY: no pointer arguments.
    let v =
        unsafe { hypercall(__HYPERVISOR_xen_version, XENVER_version as u64, 0, 0, 0, 0) } as u32;
    (v >> 16, v & 0xffff)
}

/// `XENVER_extraversion`, e.g. ".0" or ".0-shim".
pub fn xen_extraversion() -> Result<heapless_str::Str16, XenError> {
    let mut buf = [0u8; size_of::<xen_extraversion_t>()];
    // SAFETY: the hypervisor writes at most the size of xen_extraversion_t.
    check(unsafe {
        hypercall(
            __HYPERVISOR_xen_version,
            XENVER_extraversion as u64,
            buf.as_mut_ptr() as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(heapless_str::Str16(buf))
}

/// `XENVER_get_features` submap `idx`.
pub fn xen_features(idx: u32) -> Result<u32, XenError> {
    let mut fi = xen_feature_info {
        submap_idx: idx,
        submap: 0,
    };
    // SAFETY: `fi` is a valid xen_feature_info for the hypervisor to read and write.
    check(unsafe {
        hypercall(
            __HYPERVISOR_xen_version,
            XENVER_get_features as u64,
            &mut fi as *mut _ as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(fi.submap)
}

pub mod heapless_str {
    /// A NUL-padded 16-byte string from the hypervisor.
    pub struct Str16(pub [u8; 16]);

    impl Str16 {
        pub fn as_str(&self) -> &str {
            let end = self.0.iter().position(|&b| b == 0).unwrap_or(16);
            core::str::from_utf8(&self.0[..end]).unwrap_or("?")
        }
    }
}

/// Address of hypercall `nr`'s entry in the hypercall page (for code that must jump
/// there itself, like an `iret`).
pub fn entry_address(nr: u32) -> u64 {
    entry(nr) as u64
}
