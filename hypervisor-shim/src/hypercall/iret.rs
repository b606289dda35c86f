//! `HYPERVISOR_iret` (`xen-x86_64.h`: `struct iret_context`; Xen's `do_iret` in
//! xen/arch/x86/pv/iret.c): return from an exception or event frame. The guest's RSP
//! points at `{ rax, r11, rcx, flags, rip, cs, rflags, rsp, ss }` (the hypercall page
//! pushed the first three).
//!
//! - An unreadable frame crashes the guest (Xen: "Fault while reading IRET context").
//! - A CS with RPL 3 returns to guest user mode: base pointer and GS base switch to the
//!   user ones; without a user page table the guest is crashed, as in Xen.
//! - Only the low 16 bits of the CS and SS slots count: a bounce frame carries the
//!   saved upcall mask in bits 32-39 of its CS slot, and kernels hand it straight back.
//! - CS and SS are forced to RPL 3, RFLAGS loses IOPL and VM and gets IF; the event
//!   mask follows the frame's IF. With `VGCF_in_syscall` RCX and R11 are not restored.
//! - RAX comes back from the frame.
//!
//! A frame the CPU would refuse (a selector that is not a guest code/stack segment, a
//! non-canonical RIP) is caught before the shim's `iretq`: the guest gets the #GP Xen's
//! own `iretq` would have handed it (`traps::check_return_frame`).

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use crate::domain::{Domain, RunState};
use crate::machine::Machine;
use crate::pv::bounce::set_upcall_mask;
use crate::state::vcpu::eflags;

pub fn iret<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain) -> Result<i64> {
    let Ok(frame) = env.read::<iret_context>(dom, dom.regs.rsp) else {
        log::error!(
            "d{}: fault while reading IRET context from guest stack at {:#x}",
            dom.id,
            dom.regs.rsp
        );
        dom.state = RunState::Crashed;
        return Ok(0);
    };
    let iret_context {
        rax,
        r11,
        rcx,
        flags,
        rip,
        cs,
        rflags,
        rsp,
        ss,
    } = frame;
    let (cs, ss) = (cs & 0xffff, ss & 0xffff);
    if cs & 3 == 3 {
        if dom.user_l4.is_none() {
            log::error!(
                "d{}: guest switching to user mode with no user page tables",
                dom.id
            );
            dom.state = RunState::Crashed;
            return Ok(0);
        }
        dom.vcpu.toggle_guest_mode();
    }
    if dom.vcpu.vm_assist(VMASST_TYPE_architectural_iopl) {
        dom.vcpu.iopl = rflags & eflags::IOPL;
    }
    let r = &mut dom.regs;
    r.rip = rip;
    r.cs = cs | 3;
    r.rflags = (rflags & !(eflags::IOPL | eflags::VM)) | eflags::IF;
    r.rsp = rsp;
    r.ss = ss | 3;
    if flags & VGCF_in_syscall as u64 == 0 {
        r.r11 = r11;
        r.rcx = rcx;
    }
    set_upcall_mask(env.machine, dom, rflags & eflags::IF == 0);
    Ok(rax as i64)
}
