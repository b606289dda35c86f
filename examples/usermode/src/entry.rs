//! Kernel entry points for the user process: the syscall callback (`callback.h`:
//! `CALLBACKTYPE_syscall`) and the trap-table handlers for #GP, #PF and the `int`
//! gates. Xen enters each on the kernel stack given to `stack_switch` (when the guest
//! was in user mode) with RSP at the bounce frame (`xen/arch/x86/x86_64/entry.S`,
//! `create_bounce_frame`):
//!
//! ```text
//! RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS
//! ```
//!
//! A syscall's frame has no error code; its RIP/RFLAGS are the `syscall`'s RCX/R11.
//! A #GP or #PF from *kernel* mode is not ours: the stub passes it, frame untouched,
//! to libos's handler for that vector (diagnostic, or `traps::catch`).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use libos::traps::Frame;

/// Which entry the kernel came through.
pub const KIND_SYSCALL: u64 = 0;
pub const KIND_INT80: u64 = 1;
pub const KIND_INT81: u64 = 2;
pub const KIND_GP: u64 = 3;
pub const KIND_PF: u64 = 4;

/// libos's handlers for #GP and #PF, for faults in kernel mode.
pub static LIBOS_GP: AtomicU64 = AtomicU64::new(0);
pub static LIBOS_PF: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".pushsection .text.usermode_entry, \"ax\"",
    ".global um_syscall_entry",
    "um_syscall_entry: push {syscall}; jmp um_common",
    ".global um_int80_entry",
    "um_int80_entry: push {int80}; jmp um_common",
    ".global um_int81_entry",
    "um_int81_entry: push {int81}; jmp um_common",
    // CS is at RSP+32 in a frame with an error code: RPL 0 means kernel mode.
    ".global um_gp_entry",
    "um_gp_entry:",
    "    test byte ptr [rsp + 32], 3",
    "    jnz 1f",
    "    jmp [rip + {libos_gp}]",
    "1:  push {gp}; jmp um_common",
    ".global um_pf_entry",
    "um_pf_entry:",
    "    test byte ptr [rsp + 32], 3",
    "    jnz 1f",
    "    jmp [rip + {libos_pf}]",
    "1:  push {pf}; jmp um_common",
    "um_common:",
    "    push rax; push rbx; push rdx; push rsi; push rdi; push rbp",
    "    push r8; push r9; push r10; push r12; push r13; push r14; push r15",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    call {kernel}",
    "    ud2",
    ".popsection",
    // The kernel stack of `stack_switch`.
    ".pushsection .bss.usermode_kernel_stack, \"aw\", @nobits",
    ".balign 4096",
    "um_kernel_stack: .skip 32768",
    ".global um_kernel_stack_top",
    "um_kernel_stack_top:",
    ".popsection",
    syscall = const KIND_SYSCALL,
    int80 = const KIND_INT80,
    int81 = const KIND_INT81,
    gp = const KIND_GP,
    pf = const KIND_PF,
    libos_gp = sym LIBOS_GP,
    libos_pf = sym LIBOS_PF,
    kernel = sym crate::kernel_entry,
);

unsafe extern "C" {
    fn um_syscall_entry();
    fn um_int80_entry();
    fn um_int81_entry();
    fn um_gp_entry();
    fn um_pf_entry();
    static um_kernel_stack_top: u8;
}

pub fn syscall_entry() -> u64 {
    um_syscall_entry as *const () as u64
}
pub fn int80_entry() -> u64 {
    um_int80_entry as *const () as u64
}
pub fn int81_entry() -> u64 {
    um_int81_entry as *const () as u64
}
pub fn gp_entry() -> u64 {
    um_gp_entry as *const () as u64
}
pub fn pf_entry() -> u64 {
    um_pf_entry as *const () as u64
}
pub fn kernel_stack_top() -> u64 {
    core::ptr::addr_of!(um_kernel_stack_top) as u64
}

/// Remembers libos's handlers (from its trap table) for kernel-mode faults.
pub fn set_libos_handlers(gp: u64, pf: u64) {
    LIBOS_GP.store(gp, Ordering::Relaxed);
    LIBOS_PF.store(pf, Ordering::Relaxed);
}

/// What the stubs leave on the stack, lowest address first, then Xen's frame.
#[repr(C)]
pub struct Saved {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub kind: u64,
    /// Xen's bounce frame starts here.
    pub rcx: u64,
    pub r11: u64,
}

/// Reads the bounce frame after the saved registers (decoded as libos decodes it).
///
/// # Safety
/// `s` must be what the stubs pushed, followed by Xen's frame.
pub unsafe fn frame(s: &Saved) -> Frame {
    let tail = (&s.r11 as *const u64).wrapping_add(1);
    // SAFETY: Xen wrote 5 words (6 with an error code) after R11.
    let word = |i: usize| unsafe { tail.add(i).read() };
    let (error_code, o) = if matches!(s.kind, KIND_GP | KIND_PF) {
        (Some(word(0)), 1)
    } else {
        (None, 0)
    };
    Frame {
        error_code,
        rip: word(o),
        cs: word(o + 1),
        rflags: word(o + 2),
        rsp: word(o + 3),
        ss: word(o + 4),
    }
}
