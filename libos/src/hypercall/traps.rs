//! Trap, callback and CPU-state hypercalls of an x86_64 PV guest (`xen.h`,
//! `callback.h`, `arch-x86/xen-x86_64.h`): `set_trap_table`, `set_callbacks`,
//! `callback_op`, `stack_switch`, `iret`, `set_segment_base`, `fpu_taskswitch`,
//! `set_gdt`, `update_descriptor`.

use xen_sys::*;

use super::{check, hypercall, XenError};

/// `HYPERVISOR_set_trap_table(table)`: `table` ends with an entry whose `address` is 0.
pub fn set_trap_table(table: &[trap_info]) -> Result<(), XenError> {
    // Xen reads until the zero terminator: refuse a table without one.
    if table.last().is_none_or(|t| t.address != 0) {
        return Err(XenError(i64::from(XEN_EINVAL)));
    }
    // SAFETY: the table is terminated and lives across the call; only read.
    check(unsafe {
        hypercall(
            __HYPERVISOR_set_trap_table,
            table.as_ptr() as u64,
            0,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `set_trap_table` with a raw pointer.
///
/// # Safety
/// `table` must point to a zero-terminated `trap_info` array (or be deliberately bad).
pub unsafe fn set_trap_table_raw(table: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(__HYPERVISOR_set_trap_table, table, 0, 0, 0, 0) }
}

/// `HYPERVISOR_set_callbacks(event, failsafe, syscall)` (the 64-bit form).
pub fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> Result<(), XenError> {
    // SAFETY: addresses only; the hypervisor jumps there later, on our behalf.
    check(unsafe { hypercall(__HYPERVISOR_set_callbacks, event, failsafe, syscall, 0, 0) })
        .map(|_| ())
}

/// `CALLBACKOP_register` of `kind` (`CALLBACKTYPE_*`) at `address`.
pub fn callback_register(kind: u32, address: u64, flags: u16) -> Result<(), XenError> {
    let arg = callback_register {
        type_: kind as u16,
        flags,
        address,
    };
    // SAFETY: `arg` lives across the call and is only read.
    check(unsafe {
        hypercall(
            __HYPERVISOR_callback_op,
            u64::from(CALLBACKOP_register),
            &arg as *const _ as u64,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `CALLBACKOP_unregister` of `kind`.
pub fn callback_unregister(kind: u32) -> Result<(), XenError> {
    let arg = callback_unregister {
        type_: kind as u16,
        _unused: 0,
    };
    // SAFETY: `arg` lives across the call and is only read.
    check(unsafe {
        hypercall(
            __HYPERVISOR_callback_op,
            u64::from(CALLBACKOP_unregister),
            &arg as *const _ as u64,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `HYPERVISOR_stack_switch(ss, rsp)`: the kernel stack Xen switches to when it
/// delivers a trap that arrives in guest user mode.
pub fn stack_switch(ss: u64, rsp: u64) -> Result<(), XenError> {
    // SAFETY: values only; Xen checks the selector.
    check(unsafe { hypercall(__HYPERVISOR_stack_switch, ss, rsp, 0, 0, 0) }).map(|_| ())
}

/// `HYPERVISOR_set_segment_base(which, base)` (`SEGBASE_*`).
pub fn set_segment_base(which: u32, base: u64) -> Result<(), XenError> {
    // SAFETY: values only.
    check(unsafe {
        hypercall(
            __HYPERVISOR_set_segment_base,
            u64::from(which),
            base,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `HYPERVISOR_fpu_taskswitch(set)`: sets (1) or clears (0) CR0.TS for us.
pub fn fpu_taskswitch(set: bool) -> Result<(), XenError> {
    // SAFETY: a value only.
    check(unsafe { hypercall(__HYPERVISOR_fpu_taskswitch, u64::from(set), 0, 0, 0, 0) }).map(|_| ())
}

/// `HYPERVISOR_set_gdt(frames, entries)`: the GDT lives in `frames` (machine frames,
/// which must not be writable anywhere).
pub fn set_gdt(frames: &[xen_pfn_t], entries: u64) -> Result<(), XenError> {
    // SAFETY: the frame list lives across the call and is only read.
    check(unsafe {
        hypercall(
            __HYPERVISOR_set_gdt,
            frames.as_ptr() as u64,
            entries,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `HYPERVISOR_update_descriptor(maddr, desc)`: writes one 8-byte descriptor at machine
/// address `maddr` (in a GDT/LDT frame).
pub fn update_descriptor(maddr: u64, desc: u64) -> Result<(), XenError> {
    // SAFETY: values only; Xen validates the frame and the descriptor.
    check(unsafe { hypercall(__HYPERVISOR_update_descriptor, maddr, desc, 0, 0, 0) }).map(|_| ())
}

/// `HYPERVISOR_iret` with the iret_context `frame` (`arch-x86/xen-x86_64.h`): restores
/// RIP/CS/RFLAGS/RSP/SS (and RAX, R11, RCX) from `frame`. Does not return here.
///
/// # Safety
/// Returns to wherever the frame says; a bad frame crashes the domain (that is Xen's
/// answer, not an error code).
pub unsafe fn iret(frame: &iret_context) -> ! {
    // The hypercall page's iret entry pushes RCX, R11 and RAX itself: we point RSP at
    // the frame's `flags` word (the layout is the tail of iret_context) and jump.
    let tail = &frame.flags as *const u64;
    let entry = super::entry(__HYPERVISOR_iret);
    // SAFETY: the caller's contract; RSP becomes the frame, which the iret consumes.
    unsafe {
        core::arch::asm!(
            "mov rsp, rdi",
            "jmp rsi",
            in("rdi") tail,
            in("rsi") entry,
            in("rax") frame.rax,
            in("r11") frame.r11,
            in("rcx") frame.rcx,
            options(noreturn)
        )
    }
}
