//! The user process: a few instructions in guest user mode, each of which enters the
//! kernel a different way. It runs on the kernel's own page tables (as
//! `MMUEXT_NEW_USER_BASEPTR` allows: every PV page is a user page), on a stack of its
//! own, and makes no hypercall (from user mode, `syscall` reaches the kernel's syscall
//! callback instead). The kernel preserves no register for it except RSP, RIP and
//! what `HYPERVISOR_iret` restores, so each step loads what it needs itself.
//!
//! The labels are where the kernel expects each entry to come from: a fault's RIP is
//! the instruction itself, and the kernel resumes at the next label.

use core::arch::global_asm;

/// `syscall` numbers of this kernel (RAX).
pub const SYS_HELLO: u64 = 1;
pub const SYS_EXIT: u64 = 60;
/// Vectors of the trap table: a system-call gate user mode may use, and one it may not.
pub const INT_USER: u8 = 0x80;
pub const INT_KERNEL_ONLY: u8 = 0x81;
/// An address nothing maps (L4 slot 3, well below the kernel).
pub const UNMAPPED: u64 = 0x0000_0180_dead_0000;
/// What the user process passes in RDX with `int $0x80`.
pub const INT80_MARKER: u64 = 0x1234_5678;

global_asm!(
    ".pushsection .text.usermode_user, \"ax\"",
    ".global um_user_entry",
    "um_user_entry:",
    // 1. syscall, telling the kernel what %gs:0 reads in user mode.
    "    mov rdi, gs:[0]",
    "    mov eax, {sys_hello}",
    "    syscall",
    // 2. int $0x80: a DPL-3 gate.
    "    mov edx, {int80_marker}",
    "    int {int_user}",
    "    .global um_user_after_int80",
    "um_user_after_int80:",
    // 3. int $0x81: a DPL-0 gate, refused to user mode (#GP).
    "    .global um_user_int81",
    "um_user_int81:",
    "    int {int_kernel}",
    // 4. Privileged instructions: #GP(0).
    "    .global um_user_hlt",
    "um_user_hlt:",
    "    hlt",
    "    .global um_user_movcr3",
    "um_user_movcr3:",
    "    mov rax, cr3",
    // 5. A read of an unmapped address: #PF.
    "    .global um_user_pf",
    "um_user_pf:",
    "    movabs rbx, {unmapped}",
    "    .global um_user_load",
    "um_user_load:",
    "    mov rax, [rbx]",
    // 6. Ask the kernel to end the process.
    "    .global um_user_exit",
    "um_user_exit:",
    "    mov eax, {sys_exit}",
    "    syscall",
    "    ud2",
    ".popsection",
    // The user stack.
    ".pushsection .bss.usermode_user_stack, \"aw\", @nobits",
    ".balign 4096",
    "um_user_stack: .skip 16384",
    ".global um_user_stack_top",
    "um_user_stack_top:",
    ".popsection",
    sys_hello = const SYS_HELLO,
    sys_exit = const SYS_EXIT,
    int_user = const INT_USER,
    int_kernel = const INT_KERNEL_ONLY,
    unmapped = const UNMAPPED,
    int80_marker = const INT80_MARKER,
);

unsafe extern "C" {
    fn um_user_entry();
    fn um_user_after_int80();
    fn um_user_int81();
    fn um_user_hlt();
    fn um_user_movcr3();
    fn um_user_pf();
    fn um_user_load();
    fn um_user_exit();
    static um_user_stack_top: u8;
}

/// Addresses of the user program's labels.
pub struct Labels {
    pub entry: u64,
    pub after_int80: u64,
    pub int81: u64,
    pub hlt: u64,
    pub movcr3: u64,
    pub pf: u64,
    pub load: u64,
    pub exit: u64,
    pub stack_top: u64,
}

pub fn labels() -> Labels {
    let a = |f: unsafe extern "C" fn()| f as *const () as u64;
    Labels {
        entry: a(um_user_entry),
        after_int80: a(um_user_after_int80),
        int81: a(um_user_int81),
        hlt: a(um_user_hlt),
        movcr3: a(um_user_movcr3),
        pf: a(um_user_pf),
        load: a(um_user_load),
        exit: a(um_user_exit),
        stack_top: core::ptr::addr_of!(um_user_stack_top) as u64,
    }
}
