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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pv::bounce::upcall_mask;
    use crate::pv::traps::check_return_frame;
    use crate::state::vcpu::TrapEntry;
    use crate::testing::traps::*;
    use crate::testing::world::{BASE, SCRATCH};

    /// A kernel that takes an exception with events masked and returns through
    /// `HYPERVISOR_iret` with the frame exactly as delivered, as Linux's `xen_iret`
    /// does: the saved upcall mask in bits 32-39 of the CS slot must not make the
    /// return a #GP (Xen reads only the low 16 bits of CS and SS).
    #[test]
    fn iret_of_the_frame_as_delivered_with_events_masked() {
        let mut w = world();
        set_mask(&mut w, 1);
        let (rip, rsp) = (w.dom.regs.rip, w.dom.regs.rsp);
        raise(&mut w, 3, 0, 0).unwrap();
        let f = frame(&mut w, 7);
        assert_eq!(f[3], 0xe030 | 1 << 32, "kernel CS, saved mask 1");
        // The handler pops RCX and R11 and pushes `flags` = 0; the hypercall page's
        // iret entry pushes RCX, R11 and RAX.
        let at = w.dom.regs.rsp + 16 - 8 - 24;
        let head: Vec<u8> = [7u64, f[1], f[0], 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        w.poke(at, &head);
        w.dom.regs.rsp = at;
        assert_eq!(w.call(__HYPERVISOR_iret, &[]), 7);
        check_return_frame(&mut w.m, &mut w.dom).unwrap();
        assert_eq!(w.dom.state, RunState::Runnable);
        let r = &w.dom.regs;
        assert_eq!(
            (r.rip, r.rsp, r.cs, r.ss),
            (rip, rsp, 0xe033, 0xe02b),
            "back where the exception was taken, not a #GP"
        );
        assert_eq!(
            upcall_mask(&w.m, &w.dom),
            1,
            "RFLAGS.IF clear keeps events masked"
        );
    }

    #[test]
    fn iret_in_syscall_keeps_rcx_r11_and_masks_from_if() {
        let mut w = world();
        w.dom.vcpu.vm_assist = 1 << VMASST_TYPE_architectural_iopl;
        let ctx = [
            1,
            2,
            3,
            VGCF_in_syscall as u64,
            BASE + 0x80,
            0xe030,
            1 << 12,
            SCRATCH,
            0xe028,
        ];
        let bytes: Vec<u8> = ctx.iter().flat_map(|v: &u64| v.to_le_bytes()).collect();
        w.poke(SCRATCH + 0x800, &bytes);
        w.dom.regs.rsp = SCRATCH + 0x800;
        w.dom.regs.rcx = 0x77;
        assert_eq!(w.call(__HYPERVISOR_iret, &[]), 1);
        let r = &w.dom.regs;
        assert_eq!(
            (r.cs, r.ss, r.rcx),
            (0xe033, 0xe02b, 0x77),
            "RPL forced to 3, RCX kept"
        );
        assert!(w.dom.vcpu.kernel_mode);
        assert_eq!(w.dom.vcpu.iopl, 1 << 12);
        assert_eq!(upcall_mask(&w.m, &w.dom), 1);
    }

    #[test]
    fn bogus_iret_frames() {
        // Unreadable frame: crash.
        let mut w = world();
        w.dom.regs.rsp = 0x10;
        w.call(__HYPERVISOR_iret, &[]);
        assert_eq!(w.dom.state, RunState::Crashed);
        // To user mode without a user page table: crash.
        let mut w = world();
        let ctx = [0, 0, 0, 0, 0x40_1000, 0xe033, 0x200, 0x1000, 0xe02b];
        let bytes: Vec<u8> = ctx.iter().flat_map(|v: &u64| v.to_le_bytes()).collect();
        w.poke(SCRATCH + 0x800, &bytes);
        w.dom.regs.rsp = SCRATCH + 0x800;
        w.call(__HYPERVISOR_iret, &[]);
        assert_eq!(w.dom.state, RunState::Crashed);
        // The shim's ring-0 CS, or a non-canonical RIP: #GP in the guest, on the frame.
        for (cs, rip, ec) in [(0xe008, BASE, 0xe008), (0xe030, 0x8000_0000_0000_0000, 0)] {
            let mut w = world();
            let ctx = [0, 0, 0, 0, rip, cs, 0x200, SCRATCH + 0x1000, 0xe02b];
            let bytes: Vec<u8> = ctx.iter().flat_map(|v: &u64| v.to_le_bytes()).collect();
            w.poke(SCRATCH + 0x800, &bytes);
            w.dom.regs.rsp = SCRATCH + 0x800;
            w.call(__HYPERVISOR_iret, &[]);
            assert_eq!(w.dom.state, RunState::Runnable);
            check_return_frame(&mut w.m, &mut w.dom).unwrap();
            assert_eq!(w.dom.regs.rip, H + 13);
            let f = frame(&mut w, 8);
            assert_eq!((f[2], f[3], f[4] & 0xffff), (ec, rip, cs & !3));
            // Without a #GP handler the guest dies instead.
            let mut w2 = world();
            w2.dom.vcpu.trap_table[13] = TrapEntry::default();
            w2.dom.regs.cs = cs | 3;
            w2.dom.regs.rip = rip;
            assert!(check_return_frame(&mut w2.m, &mut w2.dom).is_err());
        }
    }
}
