//! What happens to an exception or a SYSCALL from a 64-bit PV guest (Xen's
//! xen/arch/x86/traps.c `do_*` handlers, `pv_inject_event` of
//! xen/arch/x86/pv/traps.c, and the syscall path of x86_64/entry.S):
//!
//! - #GP with the IDT bit in its error code is a software `int n`: delivered to the
//!   guest's handler for `n` when its trap-table DPL allows it from the current guest
//!   mode (`permit_softint`), with RIP past the 2-byte instruction; otherwise #GP.
//! - #GP(0) may be a privileged instruction to emulate, #UD the forced-emulation
//!   prefix, #NM the virtual CR0.TS (`emulate.rs`).
//! - Every other exception is delivered as it is; #PF with CR2 recorded in the vCPU and
//!   in `vcpu_info.arch.cr2`, and the error code's user bit telling guest user mode.
//! - #BP and #OF come through DPL-3 gates; Xen does not check the guest's DPL for them.
//! - A double fault or machine check, an exception without a handler, or a bounce frame
//!   that cannot be written kills the guest (and only the guest).
//! - SYSCALL from guest user mode goes to the guest kernel's syscall callback (a
//!   hypercall is only ever made from guest kernel mode); without a callback the
//!   guest gets #UD at the SYSCALL instruction.

use alloc::format;
use alloc::string::String;

use crate::bounce::{create_bounce_frame, TrapBounce, VCPU_CR2};
use crate::cpuid::CpuidPolicy;
use crate::domain::Domain;
use crate::emulate::{self, Fault, Outcome};
use crate::machine::{write_u64, Machine};
use crate::trap::{RING3_CS32, RING3_CS64, RING3_SS};
use crate::vcpu::eflags;

/// Vectors whose hardware exceptions push an error code.
const HAVE_EC: u32 = 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 17 | 1 << 21 | 1 << 29 | 1 << 30;
/// #GP error-code bits: external event, IDT.
const XEC_EXT: u64 = 1;
const XEC_IDT: u64 = 2;
/// #PF error code: user-mode access.
const PFEC_USER: u32 = 4;

/// Why the guest must die.
pub type Crash = String;

/// Delivers an exception to the guest's trap-table handler (Xen's `pv_inject_event`).
/// `software` is an `int n`: no error code, never a #PF.
pub fn inject<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    fault: Fault,
    software: bool,
) -> Result<(), Crash> {
    let vector = fault.vector;
    let ti = dom.vcpu.trap_table[vector as usize];
    let mut error_code = fault.error_code.filter(|_| !software);
    if vector == 14 && !software {
        dom.vcpu.cr2 = fault.cr2;
        write_u64(m, dom.shared_info, VCPU_CR2, fault.cr2);
        // The hardware always says "user" (the PV kernel runs in ring 3): say what the
        // guest means by it.
        error_code = error_code.map(|ec| {
            (ec & !PFEC_USER) | if dom.vcpu.kernel_mode { 0 } else { PFEC_USER }
        });
    }
    let tb = TrapBounce {
        rip: ti.address,
        error_code,
        mask_events: ti.interrupt_gate(),
        segments: None,
    };
    create_bounce_frame(m, dom, &tb).map_err(|e| {
        format!(
            "{} (vector {vector}) not delivered: {e}",
            crate::trap::exception_name(vector as u64)
        )
    })
}

/// Handles hardware exception `dom.regs.vector` raised by the guest (`dom.regs` is the
/// frame the CPU saved; `cr2` the CPU's CR2). On `Ok` the guest resumes from `dom.regs`.
pub fn handle<M: Machine + ?Sized>(
    m: &mut M,
    policy: &CpuidPolicy,
    dom: &mut Domain,
    cr2: u64,
) -> Result<(), Crash> {
    let vector = dom.regs.vector;
    let ec = dom.regs.error_code;
    let hw = |v: u8| Fault {
        vector: v,
        error_code: (HAVE_EC & 1 << v != 0).then_some(ec as u32),
        cr2,
    };
    let outcome = match vector {
        // A hardware NMI is not the guest's doing, and no NMI source is routed to guests.
        2 => return Ok(()),
        8 => return Err(String::from("double fault")),
        18 => return Err(String::from("machine check")),
        6 => match emulate::forced_invalid_op(m, policy, dom) {
            Outcome::NotHandled => Outcome::Raise(hw(6)),
            o => o,
        },
        7 => {
            // Lazy FPU: #NM with the virtual TS set is the guest's; it clears TS.
            if !dom.vcpu.cr0_ts {
                return Ok(());
            }
            dom.vcpu.cr0_ts = false;
            Outcome::Raise(hw(7))
        }
        13 if ec & XEC_EXT == 0 && ec & XEC_IDT != 0 => {
            let n = (ec >> 3) as u8;
            let ti = dom.vcpu.trap_table[n as usize];
            if dom.vcpu.permit_softint(ti.dpl()) {
                dom.regs.rip = dom.regs.rip.wrapping_add(2);
                return inject(m, dom, Fault { vector: n, error_code: None, cr2: 0 }, true);
            }
            Outcome::Raise(hw(13))
        }
        13 if ec == 0 => match emulate::privileged_op(m, policy, dom) {
            Outcome::NotHandled => Outcome::Raise(Fault::gp(0)),
            o => o,
        },
        0..=31 => Outcome::Raise(hw(vector as u8)),
        _ => return Err(format!("unexpected vector {vector}")),
    };
    match outcome {
        Outcome::Done | Outcome::NotHandled => Ok(()),
        Outcome::Raise(f) => inject(m, dom, f, false),
    }
}

/// SYSCALL from guest user mode: bounce to the kernel's syscall callback (Xen's
/// `switch_to_kernel`). `dom.regs` holds RIP = RCX, RFLAGS = R11 as SYSCALL left them.
pub fn syscall_from_user<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) -> Result<(), Crash> {
    let v = &dom.vcpu;
    let cb = if dom.regs.cs == RING3_CS32 as u64 {
        v.syscall32
    } else {
        v.syscall
    };
    let tb = if cb.address != 0 {
        TrapBounce {
            rip: cb.address,
            mask_events: cb.mask_events,
            ..TrapBounce::default()
        }
    } else {
        // No callback: #UD at the SYSCALL instruction itself.
        dom.regs.rip = dom.regs.rip.wrapping_sub(2);
        let ti = v.trap_table[6];
        TrapBounce {
            rip: ti.address,
            mask_events: ti.interrupt_gate(),
            ..TrapBounce::default()
        }
    };
    create_bounce_frame(m, dom, &tb).map_err(|e| format!("syscall from user mode not delivered: {e}"))?;
    dom.regs.rflags &= !eflags::DF;
    Ok(())
}

/// Checks the frame the shim is about to `iretq` to. Guest-chosen values (an `iret`
/// frame, a handler address) that the CPU would refuse would fault in the shim; Xen
/// meets the same fault on its own `iretq` and hands the guest a #GP there. So does
/// this: the first bad frame turns into a #GP for the guest, and a guest whose #GP
/// delivery is bad as well dies.
pub fn check_return_frame<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) -> Result<(), Crash> {
    for attempt in 0..2 {
        let r = &dom.regs;
        let ec = if r.cs != RING3_CS64 as u64 && r.cs != RING3_CS32 as u64 {
            Some((r.cs & 0xfffc) as u32)
        } else if r.ss != RING3_SS as u64 {
            Some((r.ss & 0xfffc) as u32)
        } else if !crate::paging::is_canonical(r.rip) || !crate::paging::is_canonical(r.rsp) {
            Some(0)
        } else {
            None
        };
        let Some(ec) = ec else {
            // Flags the guest may not have: IOPL (virtualised), VM; IF always set.
            dom.regs.rflags = (dom.regs.rflags & !(eflags::IOPL | eflags::VM)) | eflags::IF | 2;
            return Ok(());
        };
        if attempt == 1 {
            break;
        }
        log::warn!(
            "d{}: cannot return to cs={:#x} ss={:#x} rip={:#x} rsp={:#x}: #GP({ec:#x})",
            dom.id,
            r.cs,
            r.ss,
            r.rip,
            r.rsp
        );
        inject(m, dom, Fault::gp(ec), false)?;
    }
    Err(String::from("unusable return frame"))
}
