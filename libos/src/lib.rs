//! libos: a unikernel library OS for Xen x86_64 PV guests. An application is a `fn main()`
//! plus [`main!`]; libos boots it from `start_info`, gives it a heap, logging on the
//! hypervisor console, and powers the domain off when `main` returns (or crashes it with
//! a diagnostic when it panics).
//!
//! Events, time and async: [`events`] dispatches event-channel upcalls to handlers
//! bound to ports, [`time`] reads Xen's clocks, [`timer`] and [`executor`] run async
//! tasks that sleep and wait for events, idling in `SCHEDOP_block`.
//!
//! Runs unmodified on upstream Xen and on hypervisor-shim.
#![no_std]
#![allow(non_upper_case_globals)]

extern crate alloc;

pub mod balloon;
pub mod blk;
pub mod console;
pub mod control;
pub mod device;
pub mod errno;
pub mod events;
pub mod executor;
pub mod grant;
pub mod heap;
pub mod hypercall;
pub mod memory;
pub mod net;
pub mod p2m_lists;
pub mod paging;
mod panic;
pub mod platform;
pub mod shared_info;
pub mod start;
pub mod start_info;
pub mod sync;
pub mod time;
pub mod timer;
pub mod traps;
#[cfg(feature = "virtio")]
pub mod virtio;
pub mod vmap;
pub mod xenbus;

pub use start_info::StartInfo;

/// Declares the application's entry point: `libos::main!(main);`.
///
/// Also names the guest: the `GUEST_OS` Xen note is the package name.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[no_mangle]
        extern "Rust" fn __libos_main() {
            $main()
        }
        core::arch::global_asm!(
            ".pushsection .note.Xen, \"a\"",
            ".balign 4",
            ".long 4",
            concat!(".long ", "2f - 1f"),
            ".long 6", // XEN_ELFNOTE_GUEST_OS
            ".asciz \"Xen\"",
            "1:",
            concat!(".asciz \"", env!("CARGO_PKG_NAME"), "\""),
            "2:",
            ".balign 4",
            ".popsection",
        );
    };
}
