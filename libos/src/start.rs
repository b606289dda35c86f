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

/// The boot stack; a multiple of the page size, so the guard page below it is a page
/// of its own.
const STACK_BYTES: usize = 128 * 1024;
const _: () = assert!(STACK_BYTES.is_multiple_of(4096));

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

    /* Page-aligned pages of our own: the guard page below the stack (unmapped at
       start, so an overflow faults instead of corrupting memory), the stack, and two
       pages whose mappings libos replaces (shared_info, and the scratch mapping of
       memory.rs). */
    .pushsection .bss.libos_pages, "aw", @nobits
    .balign 4096
    .global libos_stack_guard
libos_stack_guard: .skip 4096
libos_stack: .skip {stack}
libos_stack_top:
    .global libos_shared_info_page
libos_shared_info_page: .skip 4096
    .global libos_scratch_page
libos_scratch_page: .skip 4096
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

unsafe extern "C" {
    /// The page below the boot stack (see the assembly above).
    static libos_stack_guard: u8;
}

/// The unmapped page below the boot stack.
pub fn stack_guard_va() -> u64 {
    core::ptr::addr_of!(libos_stack_guard) as u64
}

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
    let si = crate::start_info::get();
    // Handlers first, so that anything below that faults gets a diagnostic. A
    // hypervisor without these calls (-ENOSYS) still runs us, with less: say so.
    if let Err(e) = crate::traps::init() {
        log::warn!("no exception handlers (set_trap_table: {e}): a fault crashes the domain without a diagnostic");
    }
    if let Err(e) = crate::shared_info::init(si.shared_info_maddr()) {
        log::warn!("shared_info not mapped: {e}");
    }
    // Event delivery (needs shared_info). Without it, events, timers and the executor
    // are unavailable; everything else still works.
    if let Err(e) = crate::events::init() {
        log::warn!(
            "no event delivery (callback_op: {e}): events, timers and the executor are unavailable"
        );
    }
    let guard = core::ptr::addr_of!(libos_stack_guard) as u64;
    if let Err(e) = crate::hypercall::update_va_mapping(guard, 0, xen_sys::UVMF_INVLPG) {
        log::warn!("no stack guard page: {e}");
    }
    let map = crate::memory::init(si);
    if let Some(e) = map.error {
        log::warn!("only the bootstrap mapping is usable: mapping the rest of memory failed: {e}");
    }
    crate::heap::init(map.heap_start, map.heap_end);
    if let Err(e) = crate::p2m_lists::publish() {
        log::warn!("P2M frame lists not published ({e}): the toolstack cannot save this domain");
    }
    crate::console::init_ring();
    if crate::xenbus::available() && !si.initial_domain() && crate::events::available() {
        crate::control::start();
    }
    log::info!(
        "memory: {} pages, {} mapped at boot, {} mapped by libos ({} new page tables); heap {} KiB at {:#x}; {} spare frames",
        si.nr_pages(),
        map.boot_pages,
        map.mapped_pages,
        map.table_frames,
        (map.heap_end - map.heap_start) / 1024,
        map.heap_start,
        crate::memory::free_frames(),
    );
    // SAFETY: `__libos_main` is defined by the application through `main!`.
    unsafe { __libos_main() };
    crate::hypercall::shutdown(xen_sys::SHUTDOWN_poweroff)
}
