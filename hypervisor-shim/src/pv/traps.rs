//! What happens to an exception or a SYSCALL from a 64-bit PV guest (Xen's
//! xen/arch/x86/traps.c `do_*` handlers, `pv_inject_event` of
//! xen/arch/x86/pv/traps.c, and the syscall path of x86_64/entry.S):
//!
//! - #GP with the IDT bit in its error code is a software `int n`: delivered to the
//!   guest's handler for `n` when its trap-table DPL allows it from the current guest
//!   mode (`permit_softint`), with RIP past the 2-byte instruction; otherwise #GP
//!   with the error code hardware gives, `n << 3 | 2`. `n` is read from the `int n`
//!   instruction when it is there (QEMU's TCG reports `n << 4 | 2` in long mode).
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

use crate::domain::Domain;
use crate::machine::{write_u64, Machine};
use crate::pv::bounce::{create_bounce_frame, BounceError, TrapBounce, VCPU_CR2};
use crate::pv::cpuid::CpuidPolicy;
use crate::pv::emulate::{self, Fault, Outcome};
use crate::state::vcpu::eflags;
use crate::trap::{RING3_CS32, RING3_CS64, RING3_SS};

/// Vectors whose hardware exceptions push an error code.
const HAVE_EC: u32 = 1 << 8
    | 1 << 10
    | 1 << 11
    | 1 << 12
    | 1 << 13
    | 1 << 14
    | 1 << 17
    | 1 << 21
    | 1 << 29
    | 1 << 30;
/// #GP error-code bits: external event, IDT.
const XEC_EXT: u64 = 1;
const XEC_IDT: u64 = 2;
/// #PF error code: user-mode access.
const PFEC_USER: u32 = 4;

/// Why the shim crashes a guest on its way in or out (each is fatal in Xen too:
/// `domain_crash` from the entry and exit paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// An exception the guest cannot be given: no handler, a bad kernel stack, or the
    /// bounce frame faulted.
    NotDelivered {
        vector: u8,
        why: BounceError,
    },
    DoubleFault,
    MachineCheck,
    /// A vector no guest can raise.
    UnexpectedVector(u64),
    /// A `syscall` from guest user mode with no way to the guest kernel.
    SyscallNotDelivered(BounceError),
    /// An event upcall that could not be delivered.
    UpcallNotDelivered(BounceError),
    /// A return frame the CPU would refuse, and the #GP for it could not be delivered.
    UnusableReturnFrame,
}

impl core::fmt::Display for Crash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Crash::NotDelivered { vector, why } => write!(
                f,
                "{} (vector {vector}) not delivered: {why}",
                crate::trap::exception_name(*vector as u64)
            ),
            Crash::DoubleFault => write!(f, "double fault"),
            Crash::MachineCheck => write!(f, "machine check"),
            Crash::UnexpectedVector(v) => write!(f, "unexpected vector {v}"),
            Crash::SyscallNotDelivered(e) => write!(f, "syscall from user mode not delivered: {e}"),
            Crash::UpcallNotDelivered(e) => write!(f, "event upcall not delivered: {e}"),
            Crash::UnusableReturnFrame => write!(f, "unusable return frame"),
        }
    }
}

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
        write_u64(
            m,
            dom.vcpu_info.mfn,
            dom.vcpu_info.offset + VCPU_CR2,
            fault.cr2,
        );
        // The hardware always says "user" (the PV kernel runs in ring 3): say what the
        // guest means by it.
        error_code = error_code
            .map(|ec| (ec & !PFEC_USER) | if dom.vcpu.kernel_mode { 0 } else { PFEC_USER });
    }
    let tb = TrapBounce {
        rip: ti.address,
        error_code,
        mask_events: ti.interrupt_gate(),
        segments: None,
    };
    create_bounce_frame(m, dom, &tb).map_err(|why| Crash::NotDelivered { vector, why })
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
        8 => return Err(Crash::DoubleFault),
        18 => return Err(Crash::MachineCheck),
        6 => match emulate::forced_invalid_op(m, policy, dom) {
            Outcome::NotHandled => Outcome::Raise(hw(6)),
            o => o,
        },
        7 => {
            // Lazy FPU: #NM with the virtual TS set is the guest's; it clears TS.
            if !dom.vcpu.cr0_ts {
                return Ok(());
            }
            dom.vcpu.set_cr0_ts(false);
            Outcome::Raise(hw(7))
        }
        13 if ec & XEC_EXT == 0 && ec & XEC_IDT != 0 => {
            // The vector comes from the instruction when it is there: QEMU's TCG
            // reports `n << 4 | 2` in long mode, where hardware reports `n << 3 | 2`.
            let decoded = emulate::softint_vector(m, dom);
            let n = decoded.unwrap_or((ec >> 3) as u8);
            let ti = dom.vcpu.trap_table[n as usize];
            if dom.vcpu.permit_softint(ti.dpl()) {
                dom.regs.rip = dom.regs.rip.wrapping_add(2);
                return inject(
                    m,
                    dom,
                    Fault {
                        vector: n,
                        error_code: None,
                        cr2: 0,
                    },
                    true,
                );
            }
            match decoded {
                Some(n) => Outcome::Raise(Fault::gp(u32::from(n) << 3 | XEC_IDT as u32)),
                None => Outcome::Raise(hw(13)),
            }
        }
        13 if ec == 0 => match emulate::privileged_op(m, policy, dom) {
            Outcome::NotHandled => Outcome::Raise(Fault::gp(0)),
            o => o,
        },
        0..=31 => Outcome::Raise(hw(vector as u8)),
        _ => return Err(Crash::UnexpectedVector(vector)),
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
    create_bounce_frame(m, dom, &tb).map_err(Crash::SyscallNotDelivered)?;
    dom.regs.rflags &= !eflags::DF;
    Ok(())
}

/// Delivers pending events before the guest runs again (Xen's `test_all_events`): when
/// `evtchn_upcall_pending` is set and `evtchn_upcall_mask` clear, the vCPU enters its
/// event callback through a bounce frame, with events masked. A guest that unmasked
/// events without registering a callback dies, as on Xen.
#[inline]
pub fn deliver_events<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) -> Result<(), Crash> {
    if !crate::common::event_channel::upcall_due(m, dom) {
        return Ok(());
    }
    let tb = TrapBounce {
        rip: dom.vcpu.event.address,
        mask_events: true,
        ..TrapBounce::default()
    };
    create_bounce_frame(m, dom, &tb).map_err(Crash::UpcallNotDelivered)
}

/// Checks the frame the shim is about to `iretq` to. Guest-chosen values (an `iret`
/// frame, a handler address) that the CPU would refuse would fault in the shim; Xen
/// meets the same fault on its own `iretq` and hands the guest a #GP there. So does
/// this: the first bad frame turns into a #GP for the guest, and a guest whose #GP
/// delivery is bad as well dies.
#[inline]
pub fn check_return_frame<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) -> Result<(), Crash> {
    // The common case, inline (every hypercall returns through here): a flat ring-3
    // frame at canonical addresses.
    let r = &mut dom.regs;
    if r.cs == RING3_CS64 as u64
        && r.ss == RING3_SS as u64
        && crate::paging::is_canonical(r.rip)
        && crate::paging::is_canonical(r.rsp)
    {
        r.rflags = (r.rflags & eflags::GUEST_SETTABLE) | eflags::IF | 2;
        return Ok(());
    }
    fix_return_frame(m, dom)
}

#[cold]
fn fix_return_frame<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) -> Result<(), Crash> {
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
            // Only architectural flags; never IOPL (virtualised) or VM; IF always set.
            dom.regs.rflags = (dom.regs.rflags & eflags::GUEST_SETTABLE) | eflags::IF | 2;
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
    Err(Crash::UnusableReturnFrame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::read_u64;
    use crate::pv::bounce::upcall_mask;
    use crate::state::vcpu::{GuestCpu, TrapEntry};
    use crate::testing::traps::*;
    use crate::testing::world::{BASE, SCRATCH};
    use crate::trap::SYSCALL_VECTOR;
    use xen_sys::*;

    #[test]
    fn page_fault_bounce_frame_byte_for_byte() {
        let mut w = world();
        set_mask(&mut w, 0);
        w.dom.regs.rflags = 0x202 | eflags::TF | eflags::AC;
        raise(&mut w, 14, 6, 0xdead_b000).unwrap();
        let sp = SCRATCH + 0x1000 - 64;
        assert_eq!(w.dom.regs.rsp, sp);
        let expect = [
            0xc1,
            0x11,
            2, // write, not-present... with the user bit cleared: guest kernel mode
            BASE + 0x40,
            0xe030, // RPL 0: "kernel"; saved upcall mask 0 in bits 32..
            0x202 | eflags::TF | eflags::AC,
            SCRATCH + 0x1000,
            0xe02b,
        ];
        let bytes: Vec<u8> = expect.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(w.peek(sp, 64), bytes);
        let r = &w.dom.regs;
        assert_eq!((r.rip, r.cs, r.ss), (H + 14, 0xe033, 0xe02b));
        assert_eq!(r.rflags, 0x202, "TF and AC cleared on entry");
        assert_eq!(w.dom.vcpu.cr2, 0xdead_b000);
        let si = w.m.frame(w.dom.shared_info).unwrap();
        assert_eq!(
            read_u64(si, (w.dom.vcpu_info.offset + VCPU_CR2) / 8),
            0xdead_b000
        );
        assert_eq!(
            upcall_mask(&w.m, &w.dom),
            0,
            "trap gate: events stay enabled"
        );
    }

    #[test]
    fn interrupt_gate_masks_events_and_saves_the_mask_in_cs() {
        let mut w = world();
        w.dom.vcpu.trap_table[0x80] = TrapEntry {
            address: H + 0x80,
            cs: 0xe033,
            flags: 3 | 4,
        };
        set_mask(&mut w, 0);
        w.dom.regs.rip = BASE + 0x40;
        raise(&mut w, 13, 0x80 << 3 | 2, 0).unwrap();
        let f = frame(&mut w, 7);
        assert_eq!(f[2], BASE + 0x42, "RIP past int $0x80");
        assert_eq!(f[3], 0xe030);
        assert_eq!(f[4] & eflags::IF, eflags::IF);
        assert_eq!(upcall_mask(&w.m, &w.dom), 1);
        // Again, now with events masked: the saved mask shows in CS bits 32.., IF clear.
        w.dom.regs.rip = BASE + 0x40;
        raise(&mut w, 13, 0x80 << 3 | 2, 0).unwrap();
        let f = frame(&mut w, 7);
        assert_eq!(f[3], 0xe030 | 1 << 32);
        assert_eq!(f[4] & eflags::IF, 0);
    }

    #[test]
    fn int_n_vector_comes_from_the_instruction_not_qemus_error_code() {
        // QEMU's TCG reports `int n` refused by a gate as #GP(n << 4 | 2) in long mode;
        // the `cd nn` at RIP says which vector it was.
        for (user, dpl, delivered) in [(true, 3, true), (true, 0, false), (false, 1, true)] {
            let mut w = world();
            if user {
                to_user(&mut w);
            }
            w.dom.vcpu.trap_table[0x81] = TrapEntry {
                address: H + 0x81,
                cs: 0xe033,
                flags: dpl,
            };
            w.poke(SCRATCH + 0x2000, &[0xcd, 0x81]);
            w.dom.regs.rip = SCRATCH + 0x2000;
            w.dom.regs.rsp = SCRATCH + 0x1000;
            raise(&mut w, 13, 0x81 << 4 | 2, 0).unwrap();
            if delivered {
                assert_eq!(w.dom.regs.rip, H + 0x81, "user {user} dpl {dpl}");
                assert_eq!(frame(&mut w, 7)[2], SCRATCH + 0x2002, "RIP past int");
            } else {
                assert_eq!(w.dom.regs.rip, H + 13, "user {user} dpl {dpl}");
                let f = frame(&mut w, 8);
                assert_eq!(f[2], 0x81 << 3 | 2, "the architectural error code");
                assert_eq!(f[3], SCRATCH + 0x2000, "RIP at the int");
            }
        }
    }

    #[test]
    fn int_n_follows_the_trap_table_dpl() {
        for (dpl, user, delivered) in [
            (0, false, false),
            (1, false, true),
            (3, false, true),
            (1, true, false),
            (2, true, false),
            (3, true, true),
        ] {
            let mut w = world();
            if user {
                to_user(&mut w);
            }
            w.dom.vcpu.trap_table[0x21] = TrapEntry {
                address: H + 0x21,
                cs: 0xe033,
                flags: dpl,
            };
            raise(&mut w, 13, 0x21 << 3 | 2, 0).unwrap();
            assert!(w.dom.vcpu.kernel_mode);
            if delivered {
                assert_eq!(w.dom.regs.rip, H + 0x21, "dpl {dpl} user {user}");
                assert_eq!(
                    frame(&mut w, 7)[2],
                    BASE + 0x42,
                    "no error code, RIP past int"
                );
            } else {
                assert_eq!(w.dom.regs.rip, H + 13, "dpl {dpl} user {user}");
                let f = frame(&mut w, 8);
                assert_eq!(f[2], 0x21 << 3 | 2, "#GP with the IDT error code");
                assert_eq!(f[3], BASE + 0x40, "RIP at the int");
            }
        }
    }

    #[test]
    fn user_mode_exception_switches_to_the_kernel_stack_and_iret_goes_back() {
        let mut w = world();
        to_user(&mut w);
        w.dom.vcpu.gs_base_kernel = 0xffff_8000_0000_1000;
        w.dom.vcpu.gs_base_user = 0x5000;
        assert_eq!(w.dom.active_l4(), USER_L4);
        assert_eq!(GuestCpu::from(&w.dom.vcpu).gs_base, 0x5000);
        w.dom.regs.rsp = 0x7fff_f000;
        raise(&mut w, 0, 0, 0).unwrap();
        assert!(w.dom.vcpu.kernel_mode);
        assert_eq!(w.dom.active_l4(), w.dom.l4);
        assert_eq!(GuestCpu::from(&w.dom.vcpu).gs_base, 0xffff_8000_0000_1000);
        let top = KSTACK & !0xf;
        assert_eq!(w.dom.regs.rsp, top - 56);
        let f = frame(&mut w, 7);
        assert_eq!(
            f[3],
            0xe033 | 1 << 32,
            "RPL 3: from user mode; events were masked"
        );
        assert_eq!(f[5], 0x7fff_f000);

        // The kernel returns: rax, r11, rcx pushed by the hypercall page on top of the frame.
        let ctx = [
            42,
            0x211,
            0x99,
            0,
            0x40_1000,
            0xe033,
            0x200 | 3 << 12,
            0x7fff_f000,
            0xe02b,
        ];
        let at = w.dom.regs.rsp - 24;
        let bytes: Vec<u8> = ctx.iter().flat_map(|v: &u64| v.to_le_bytes()).collect();
        w.poke(at, &bytes);
        w.dom.regs.rsp = at;
        assert_eq!(w.call(__HYPERVISOR_iret, &[]), 42);
        assert!(!w.dom.vcpu.kernel_mode);
        assert_eq!(w.dom.active_l4(), USER_L4);
        let r = &w.dom.regs;
        assert_eq!(
            (r.rip, r.cs, r.rsp, r.ss, r.rcx, r.r11),
            (0x40_1000, 0xe033, 0x7fff_f000, 0xe02b, 0x99, 0x211)
        );
        assert_eq!(r.rflags, 0x200, "IOPL never reaches the hardware");
        assert_eq!(w.dom.vcpu.iopl, 0, "no architectural_iopl");
        assert_eq!(
            upcall_mask(&w.m, &w.dom),
            0,
            "IF set in the frame unmasks events"
        );
    }

    #[test]
    fn no_handler_double_fault_and_bad_stack_are_fatal() {
        let mut w = world();
        w.dom.vcpu.trap_table[14] = TrapEntry::default();
        assert!(raise(&mut w, 14, 0, 0x10)
            .unwrap_err()
            .to_string()
            .contains("no handler"));
        let mut w = world();
        assert!(raise(&mut w, 8, 0, 0).is_err());
        let mut w = world();
        w.dom.regs.rsp = xen_sys::__HYPERVISOR_VIRT_START + 0x1000;
        assert!(raise(&mut w, 0, 0, 0)
            .unwrap_err()
            .to_string()
            .contains("bad guest kernel stack"));
        let mut w = world();
        w.dom.regs.rsp = 0x2000; // unmapped
        assert!(raise(&mut w, 0, 0, 0)
            .unwrap_err()
            .to_string()
            .contains("fault writing"));
    }

    #[test]
    fn syscall_from_user_mode_goes_to_the_callback() {
        let mut w = world();
        to_user(&mut w);
        w.dom.regs.vector = SYSCALL_VECTOR;
        w.dom.regs.rflags = 0x202 | eflags::DF;
        w.dom.regs.rip = 0x40_1002; // after the SYSCALL
                                    // No callback: #UD at the SYSCALL.
        syscall_from_user(&mut w.m, &mut w.dom).unwrap();
        assert_eq!(w.dom.regs.rip, H + 6);
        assert_eq!(frame(&mut w, 7)[2], 0x40_1000);

        let mut w = world();
        to_user(&mut w);
        w.dom.vcpu.syscall = crate::state::vcpu::Callback {
            address: BASE + 0x500,
            mask_events: true,
        };
        set_mask(&mut w, 0);
        w.dom.regs.rflags = 0x202 | eflags::DF;
        w.dom.regs.rip = 0x40_1002;
        syscall_from_user(&mut w.m, &mut w.dom).unwrap();
        assert!(w.dom.vcpu.kernel_mode);
        assert_eq!(w.dom.regs.rip, BASE + 0x500);
        assert_eq!(w.dom.regs.rflags & eflags::DF, 0);
        let f = frame(&mut w, 7);
        assert_eq!((f[0], f[1], f[2], f[3]), (0xc1, 0x11, 0x40_1002, 0xe033));
        assert_eq!(upcall_mask(&w.m, &w.dom), 1);
    }
}
