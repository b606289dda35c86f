//! PVH entry: QEMU (or any PVH loader) enters `pvh_start32` in 32-bit protected mode,
//! paging off, `%ebx` = physical address of `hvm_start_info`
//! (`xen/include/public/arch-x86/hvm/start_info.h`).
//!
//! The trampoline identity-maps the low 4 GiB (for itself) and maps the same 4 GiB at
//! `DIRECTMAP` (L4 slot `DIRECTMAP_SLOT`, 262) with 2 MiB pages, enters long mode and calls
//! [`crate::shim_main`] on the high-half stack.

use core::arch::global_asm;

/// Physical memory the boot page tables map (and the shim can therefore reach).
pub const DIRECTMAP_BYTES: u64 = 4 << 30;
/// Where physical memory appears; `SHIM_DIRECTMAP` in `linker.ld` must agree.
pub const DIRECTMAP: u64 = 0xffff_8300_0000_0000;
pub const DIRECTMAP_SLOT: usize = ((DIRECTMAP >> 39) & 0x1ff) as usize;

unsafe extern "C" {
    static boot_pml4: [u64; 512];
}

/// The boot L4, which maps only the shim (identity for the trampoline, and the direct
/// map). It lives in `.boot`, linked at its physical address.
fn boot_l4() -> &'static [u64; 512] {
    // SAFETY: written once by the trampoline before any Rust code runs, never again.
    unsafe { &*core::ptr::addr_of!(boot_pml4) }
}

/// The machine frame of the boot L4.
pub fn boot_l4_mfn() -> u64 {
    boot_l4().as_ptr() as u64 >> 12
}

/// The direct-map L4 entry, which every guest L4 carries so traps land in the shim.
pub fn directmap_l4_entry() -> u64 {
    boot_l4()[DIRECTMAP_SLOT]
}

global_asm!(
    r#"
    .section .note.xen, "a"
    .balign 4
    .long 4
    .long 8
    .long {phys32_entry}
    .asciz "Xen"
    .balign 4
    /* For an ELF64 the loader reads this descriptor as 8 bytes. */
    .quad pvh_start32
    .balign 4

    .section .boot.text, "awx"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi
    mov $boot_stack_top, %esp

    /* Zero the boot page tables (6 pages). */
    mov $boot_pml4, %edi
    xor %eax, %eax
    mov $(6 * 4096 / 4), %ecx
    rep stosl

    /* PML4[0] and PML4[DIRECTMAP_SLOT] -> the PDPT; PDPT[0..4] -> four page directories. */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + {directmap_slot} * 8
    mov $boot_pd, %eax
    or $3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b

    /* 2048 2 MiB pages covering 0..4 GiB: present, writable, PS. */
    mov $boot_pd, %edi
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%edi, %ecx, 8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, 4(%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    /* PAE, OSFXSR and OSXMMEXCPT (guests may use SSE, as on Xen; the shim itself is
       soft-float), then EFER.LME|NXE|SCE, then paging with MP and NE (WAIT honours
       CR0.TS, x87 errors are #MF: the CR0 guests are shown, emulate::GUEST_CR0). */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x901, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010023, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $boot_long_mode

    .code64
boot_long_mode:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov %esi, %edi
    movabs $shim_stack_top, %rsp
    movabs $shim_main, %rax
    call *%rax
3:  hlt
    jmp 3b

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4 * 4096
boot_stack: .skip 4096
boot_stack_top:
    .previous
"#,
    phys32_entry = const xen_sys::XEN_ELFNOTE_PHYS32_ENTRY,
    directmap_slot = const DIRECTMAP_SLOT,
    options(att_syntax)
);
