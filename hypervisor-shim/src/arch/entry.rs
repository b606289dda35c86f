//! Entry and exit stubs: every exception vector and SYSCALL build the same
//! [`TrapFrame`] on the shim stack and call [`crate::trap_entry`]; leaving the shim is
//! always an `iretq` from a `TrapFrame`.
//!
//! The shim runs with interrupts off and is never re-entered from a guest. An entry from
//! the guest saves its registers straight into the running domain's `regs` (TSS.RSP0 and
//! `guest_frame_end` point just past them: the CPU pushes its part of the frame there,
//! the stubs the rest), then switches to the shim's one stack; the exit pops the frame
//! from the domain's `regs` of whichever domain runs next. No copy either way. NMI, #DF
//! and #MC arrive on a separate IST stack, and their frame is copied in.

use core::arch::global_asm;

use hypervisor_shim::trap::TrapFrame;

const STACK_BYTES: usize = 64 * 1024;

global_asm!(
    r#"
    .section .bss.shim_stacks, "aw", @nobits
    .balign 4096
    .global shim_stack_top
shim_stack: .skip {stack}
shim_stack_top:
    .global ist_stack_top
ist_stack: .skip 16384
ist_stack_top:
    .previous

    .section .data.shim_entry, "aw"
    .balign 8
guest_rsp_scratch: .quad 0
    .global guest_frame_end
guest_frame_end: .quad 0
    .previous

    .text
    /* Vectors that push an error code: 8, 10-14, 17, 21, 29, 30. */
    .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    .balign 16
trap_stub_\v:
    push $0
    push $\v
    jmp trap_common
    .endr
    .irp v, 8,10,11,12,13,14,17,21,29,30
    .balign 16
trap_stub_\v:
    push $\v
    jmp trap_common
    .endr

    /* The local APIC's timer and spurious vectors: interrupts, no error code. */
    .balign 16
    .global timer_stub
timer_stub:
    push $0
    push ${timer_vector}
    jmp trap_common
    .balign 16
    .global serial_stub
serial_stub:
    push $0
    push ${serial_vector}
    jmp trap_common
    .balign 16
    .global spurious_stub
spurious_stub:
    push $0
    push ${spurious_vector}
    jmp trap_common

    /* The devices' vectors (through the I/O APICs): 16 bytes per stub. */
    .balign 16
    .global device_stubs
device_stubs:
    .set device_vector, {device_base}
    .rept {device_count}
    .balign 16
    push $0
    push $device_vector
    jmp trap_common
    .set device_vector, device_vector + 1
    .endr

    .section .rodata.trap_stub_table, "a"
    .balign 8
    .global trap_stub_table
trap_stub_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_stub_\v
    .endr
    .previous

    /* SYSCALL from the guest: RCX = return RIP, R11 = RFLAGS, RSP still the guest's. */
    .balign 16
    .global syscall_entry
syscall_entry:
    mov %rsp, guest_rsp_scratch(%rip)
    mov guest_frame_end(%rip), %rsp
    push ${ss}
    push guest_rsp_scratch(%rip)
    push %r11
    push ${cs}
    push %rcx
    push $0
    push ${syscall_vector}

    jmp trap_common

    /* SYSCALL from 32-bit compat mode (CSTAR): the same, recorded with the 32-bit CS. */
    .balign 16
    .global cstar_entry
cstar_entry:
    mov %rsp, guest_rsp_scratch(%rip)
    lea shim_stack_top(%rip), %rsp
    push ${ss}
    push guest_rsp_scratch(%rip)
    push %r11
    push ${cs32}
    push %rcx
    push $0
    push ${syscall_vector}

trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    /* From the guest: the frame is in place, run on the shim stack. From ring 0 (a
       fault in the shim itself): stay where we are. */
    testb $3, {cs_offset}(%rsp)
    jz 1f
    lea shim_stack_top(%rip), %rsp
1:
    call trap_entry
    mov %rax, %rsp

enter_frame_from_rsp:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    /* enter_frame(frame: *const TrapFrame) -> ! */
    .global enter_frame
enter_frame:
    mov %rdi, %rsp
    jmp enter_frame_from_rsp
"#,
    stack = const STACK_BYTES,
    ss = const hypervisor_shim::trap::RING3_SS,
    cs = const hypervisor_shim::trap::RING3_CS64,
    cs32 = const hypervisor_shim::trap::RING3_CS32,
    syscall_vector = const hypervisor_shim::trap::SYSCALL_VECTOR,
    timer_vector = const hypervisor_shim::trap::TIMER_VECTOR,
    spurious_vector = const hypervisor_shim::trap::SPURIOUS_VECTOR,
    serial_vector = const hypervisor_shim::trap::SERIAL_VECTOR,
    device_base = const hypervisor_shim::trap::DEVICE_VECTOR_BASE,
    device_count = const hypervisor_shim::trap::DEVICE_VECTORS,
    cs_offset = const core::mem::offset_of!(TrapFrame, cs),
    options(att_syntax)
);

unsafe extern "C" {
    static mut guest_frame_end: u64;
    static trap_stub_table: [u64; 32];
    static shim_stack_top: u8;
    static ist_stack_top: u8;
    fn syscall_entry();
    fn timer_stub();
    fn spurious_stub();
    fn serial_stub();
    fn device_stubs();
    fn cstar_entry();
    fn enter_frame(frame: *const TrapFrame) -> !;
}

pub struct Stacks {
    pub kernel_top: u64,
    pub ist_top: u64,
}

pub fn stacks() -> Stacks {
    Stacks {
        kernel_top: core::ptr::addr_of!(shim_stack_top) as u64,
        ist_top: core::ptr::addr_of!(ist_stack_top) as u64,
    }
}

pub fn trap_stubs() -> &'static [u64; 32] {
    // SAFETY: the table is immutable data emitted above.
    unsafe { &*core::ptr::addr_of!(trap_stub_table) }
}

/// Entry stubs of the local APIC's timer and spurious vectors, of COM1's input and of
/// the devices' lines.
pub fn interrupt_stubs() -> impl Iterator<Item = (u64, u64)> {
    use hypervisor_shim::trap::{DEVICE_VECTORS, DEVICE_VECTOR_BASE};
    let devices = device_stubs as *const () as u64;
    [
        (
            hypervisor_shim::trap::TIMER_VECTOR,
            timer_stub as *const () as u64,
        ),
        (
            hypervisor_shim::trap::SPURIOUS_VECTOR,
            spurious_stub as *const () as u64,
        ),
        (
            hypervisor_shim::trap::SERIAL_VECTOR,
            serial_stub as *const () as u64,
        ),
    ]
    .into_iter()
    .chain((0..DEVICE_VECTORS).map(move |i| (DEVICE_VECTOR_BASE + i, devices + 16 * i)))
}

pub fn syscall_entry_addr() -> u64 {
    syscall_entry as *const () as u64
}

pub fn cstar_entry_addr() -> u64 {
    cstar_entry as *const () as u64
}

/// Leaves the shim into the context described by `frame` (an `iretq`).
///
/// The frame must describe ring-3 guest state (or be one the CPU built on entry), and the
/// page tables of the guest it belongs to must be loaded.
pub fn enter(frame: &TrapFrame) -> ! {
    // SAFETY: the frame is a complete TrapFrame; the stub only pops it and irets, and the
    // shim stack is reset on the next entry through TSS.RSP0 / the syscall stub.
    unsafe { enter_frame(frame) }
}

/// Points the next guest entry (SYSCALL here, exceptions through TSS.RSP0, which the
/// caller sets to the same value) at `regs`: the registers of the domain about to run.
///
/// # Safety
/// `regs` must stay valid and unaliased until the next entry has been handled.
pub unsafe fn set_guest_frame(regs: *const TrapFrame) -> u64 {
    let end = regs as u64 + core::mem::size_of::<TrapFrame>() as u64;
    // SAFETY: single CPU, interrupts off: nothing else reads the variable meanwhile.
    unsafe { *core::ptr::addr_of_mut!(guest_frame_end) = end };
    end
}
