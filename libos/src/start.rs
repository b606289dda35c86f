//! The PV entry point and the Xen ELF notes (`xen/include/public/elfnote.h`) that tell a
//! domain builder (Xen's or the shim's) how to load us.
//!
//! The builder enters `_start` in ring 3 with RSI = the virtual address of `start_info`
//! and RSP on a one-page bootstrap stack; we move to our own stack at once.

use core::arch::global_asm;

use xen_sys::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET,
    XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};

const STACK_BYTES: usize = 128 * 1024;

global_asm!(
    r#"
    .macro xen_note type, body:vararg
    .pushsection .note.Xen, "a"
    .balign 4
    .long 4
    .long 2f - 1f
    .long \type
    .asciz "Xen"
1:  \body
2:  .balign 4
    .popsection
    .endm

    xen_note {xen_version}, .asciz "xen-3.0"
    xen_note {loader}, .asciz "generic"
    xen_note {virt_base}, .quad __virt_base
    xen_note {paddr_offset}, .quad __virt_base
    xen_note {entry}, .quad _start
    xen_note {hypercall_page}, .quad hypercall_page

    .pushsection .text.start, "ax"
    .global _start
_start:
    cld
    lea libos_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %rsi, %rdi
    call libos_start
    ud2
    .popsection

    .pushsection .bss.libos_stack, "aw", @nobits
    .balign 16
libos_stack: .skip {stack}
libos_stack_top:
    .popsection
"#,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    loader = const XEN_ELFNOTE_LOADER,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
    stack = const STACK_BYTES,
    options(att_syntax)
);

unsafe extern "Rust" {
    /// The application's `main`, declared by [`crate::main!`].
    fn __libos_main();
}

#[no_mangle]
extern "C" fn libos_start(si: *const xen_sys::start_info) -> ! {
    // SAFETY: the domain builder passes a mapped, initialised start_info page in RSI.
    let si = unsafe { si.read() };
    crate::start_info::init(si);
    crate::console::init();
    crate::heap::init(crate::start_info::get());
    // SAFETY: `__libos_main` is defined by the application through `main!`.
    unsafe { __libos_main() };
    crate::hypercall::shutdown(xen_sys::SHUTDOWN_poweroff)
}
