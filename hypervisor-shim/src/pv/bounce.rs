//! Bounce frames: how an exception, a syscall from guest user mode, or (issue 4) an event
//! upcall reaches a 64-bit PV guest. This is `create_bounce_frame` of Xen's
//! xen/arch/x86/x86_64/entry.S (and the failsafe frame of `load_segments` in
//! xen/arch/x86/domain.c): switch to the guest kernel (stack from `stack_switch`, kernel
//! base pointer, kernel GS) if the guest was in user mode, push
//! `{ RCX, R11, [error code | DS, ES, FS, GS], RIP, CS, RFLAGS, RSP, SS }` on the guest
//! kernel stack, and enter the handler with the frame's address in RSP.
//!
//! The frame's CS carries the vCPU's previous `evtchn_upcall_mask` in bits 32-39, and
//! its RPL says where the guest was: 3 for user mode, 0 for kernel mode (Xen clears the
//! RPL of a kernel frame, since the PV kernel itself runs in ring 3). RFLAGS.IF in the
//! frame is the inverse of the saved upcall mask; IOPL is the virtual IOPL when the
//! guest enabled `VMASST_TYPE_architectural_iopl`.

use core::mem::offset_of;

use crate::domain::Domain;
use crate::machine::{GuestMemory, Machine};
use crate::state::vcpu::eflags;
use crate::state::vcpu::VcpuInfoAt;

/// What to deliver (Xen's `struct trap_bounce`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapBounce {
    /// Handler address; 0 means none, and the guest is crashed (`null_trap_bounce`).
    pub rip: u64,
    /// `TBF_EXCEPTION_ERRCODE`: push this error code.
    pub error_code: Option<u32>,
    /// `TBF_INTERRUPT`: mask events (`evtchn_upcall_mask = 1`) on entry.
    pub mask_events: bool,
    /// The failsafe callback's frame: DS, ES, FS, GS in place of an error code.
    pub segments: Option<[u16; 4]>,
}

/// Why a bounce frame could not be built; each is fatal to the guest, as in Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceError {
    /// No handler registered (`create_bounce_frame_bad_bounce_ip`).
    NoHandler,
    /// The stack pointer lies in the hypervisor's reserved range
    /// (`create_bounce_frame_bad_sp`) or wraps.
    BadStack(u64),
    /// Writing the frame faulted at this address (Xen: `domain_crash` from the fixup).
    Fault(u64),
}

impl core::fmt::Display for BounceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BounceError::NoHandler => write!(f, "no handler registered"),
            BounceError::BadStack(sp) => write!(f, "bad guest kernel stack {sp:#x}"),
            BounceError::Fault(a) => write!(f, "fault writing the bounce frame at {a:#x}"),
        }
    }
}

/// Offset of `arch.cr2` in a `vcpu_info`.
pub const VCPU_CR2: usize =
    offset_of!(xen_sys::vcpu_info, arch) + offset_of!(xen_sys::arch_vcpu_info, cr2);

pub fn upcall_mask<M: Machine + ?Sized>(m: &M, dom: &Domain) -> u8 {
    dom.vcpu_info
        .read_u8(m, VcpuInfoAt::UPCALL_MASK)
        .unwrap_or(1)
}

pub fn set_upcall_mask<M: Machine + ?Sized>(m: &mut M, dom: &Domain, masked: bool) {
    dom.vcpu_info
        .write_u8(m, VcpuInfoAt::UPCALL_MASK, masked as u8);
}

/// Builds the bounce frame for `tb` on the guest kernel stack and points `dom.regs` at
/// the handler. On error the guest must be crashed; `dom` may be half updated then.
pub fn create_bounce_frame<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    tb: &TrapBounce,
) -> Result<(), BounceError> {
    if tb.rip == 0 {
        return Err(BounceError::NoHandler);
    }
    let regs = dom.regs;
    let (sp, cs) = if dom.vcpu.kernel_mode {
        // Already in the guest kernel: push at the current RSP, and say "kernel".
        (regs.rsp, regs.cs & !3)
    } else {
        dom.vcpu.toggle_guest_mode();
        (dom.vcpu.kernel_sp, regs.cs)
    };
    let sp = sp & !0xf;
    // Xen refuses a stack inside its own range: (HYPERVISOR_VIRT_START,
    // HYPERVISOR_VIRT_END + 64].
    if sp > xen_sys::__HYPERVISOR_VIRT_START && sp < xen_sys::__HYPERVISOR_VIRT_END + 64 {
        return Err(BounceError::BadStack(sp));
    }

    let saved_mask = upcall_mask(m, dom);
    if tb.mask_events {
        set_upcall_mask(m, dom, true);
    }
    let mut rflags = regs.rflags & !(eflags::IF | eflags::IOPL);
    if saved_mask == 0 {
        rflags |= eflags::IF;
    }
    if dom.vcpu.vm_assist(xen_sys::VMASST_TYPE_architectural_iopl) {
        rflags |= dom.vcpu.iopl & eflags::IOPL;
    }

    let mut frame = [0u64; 11];
    let mut n = 0;
    let mut push = |v: u64| {
        frame[n] = v;
        n += 1;
    };
    push(regs.rcx);
    push(regs.r11);
    if let Some(segs) = tb.segments {
        segs.iter().for_each(|&s| push(s as u64));
    } else if let Some(ec) = tb.error_code {
        push(ec as u64);
    }
    push(regs.rip);
    push((cs & 0xffff) | (saved_mask as u64) << 32);
    push(rflags);
    push(regs.rsp);
    push(regs.ss);
    let bytes_len = n * 8;
    let base = sp
        .checked_sub(bytes_len as u64)
        .ok_or(BounceError::BadStack(sp))?;
    let mut bytes = [0u8; 88];
    for (chunk, v) in bytes.chunks_exact_mut(8).zip(&frame[..n]) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    GuestMemory {
        machine: &mut *m,
        l4: dom.l4,
    }
    .write(base, &bytes[..bytes_len])
    .map_err(|crate::machine::GuestFault::Unmapped(a)| BounceError::Fault(a))?;

    // IA32 Ref. Vol. 3: TF, VM, RF and NT are cleared on a trap; AC too, so alignment
    // checks do not hit the kernel.
    let r = &mut dom.regs;
    r.rflags &= !(eflags::AC | eflags::VM | eflags::RF | eflags::NT | eflags::TF);
    r.ss = xen_sys::FLAT_KERNEL_SS as u64;
    r.rsp = base;
    r.cs = xen_sys::FLAT_KERNEL_CS as u64;
    r.rip = tb.rip;
    Ok(())
}
