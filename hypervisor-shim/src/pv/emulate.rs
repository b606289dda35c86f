//! Instruction emulation for a PV kernel running in ring 3 (Xen's
//! xen/arch/x86/pv/emul-priv-op.c and the forced-emulation prefix of
//! xen/arch/x86/pv/emul-inv-op.c).
//!
//! Xen's rules, followed here:
//! - `ud2; .ascii "xen"; cpuid` (#UD) runs CPUID against the domain's policy; so does a
//!   plain CPUID that faults (#GP(0), CPUID faulting).
//! - The guest kernel counts as CPL 0 for privileged instructions: `mov` to/from CR0,
//!   CR2, CR3, CR4, `clts`, `wbinvd`, `rdmsr`, `wrmsr`. From guest user mode they #GP.
//! - `in`/`out` and `cli`/`sti` need the virtual IOPL (`Vcpu::iopl_ok`). `cli`/`sti`
//!   then do nothing at all: Xen deliberately does not turn them into event masking
//!   (a later `popf` could not be trapped to undo it). A port the domain may not use
//!   reads as all ones and ignores writes, as Xen's `guest_io_read`/`guest_io_write`.
//! - Everything else, including `hlt` (not in Xen's list of emulated opcodes), string
//!   I/O and `mov` to/from debug registers (not emulated by the shim), is #GP(0).
//!
//! I/O ports: only the privileged domain has any, and never the shim's own: the PICs
//! (0x20-0x21, 0xa0-0xa1), the PIT (0x40-0x43), the ELCR (0x4d0-0x4d1), COM1
//! (0x3f8-0x3ff, the shim's console: dom0 writes to it through `console_io`), and
//! QEMU's isa-debug-exit (0xf4, how the shim reports its exit status). PCI
//! configuration space (0xcf8-0xcff) is passed through, for dom0's device drivers.
//!
//! Instruction bytes are fetched through the guest's own page tables: a fetch that
//! fails is a #PF for the guest, never a fault in the shim.

use crate::domain::Domain;
use crate::machine::{write_u64, GuestMemory, Machine};
use crate::pv::cpuid::CpuidPolicy;
use crate::state::vcpu::{eflags, CR0_TS};

/// CR0 as the guest reads it (PE, MP, ET, NE, WP, AM, PG), TS from the virtual TS.
pub const GUEST_CR0: u64 = 0x8005_0033;
pub use crate::state::vcpu::GUEST_CR4;

/// The forced-emulation signature: `ud2; .ascii "xen"` (`XEN_CPUID` in `arch-x86/xen.h`).
pub const FORCED_EMULATION_PREFIX: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

const SHIM_PORTS: &[(u16, u16)] = &[
    (0x20, 0x21),
    (0xa0, 0xa1),
    (0x40, 0x43),
    (0x4d0, 0x4d1),
    (0x3f8, 0x3ff),
    (0xf4, 0xf4),
];

/// An exception to raise in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// The faulting address, for #PF.
    pub cr2: u64,
}

impl Fault {
    pub fn gp(ec: u32) -> Self {
        Fault {
            vector: 13,
            error_code: Some(ec),
            cr2: 0,
        }
    }
    /// A failed instruction fetch (error code 0; delivery adds the user bit).
    pub fn fetch(addr: u64) -> Self {
        Fault {
            vector: 14,
            error_code: Some(0),
            cr2: addr,
        }
    }
    pub fn debug() -> Self {
        Fault {
            vector: 1,
            error_code: None,
            cr2: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Emulated; the guest resumes after the instruction.
    Done,
    /// Not an instruction the shim emulates here: the original exception stands.
    NotHandled,
    /// Raise this in the guest instead.
    Raise(Fault),
}

/// May the domain use ports `port..port + size`?
pub fn io_permitted(dom: &Domain, port: u16, size: u8) -> bool {
    let Some(last) = port.checked_add(size as u16 - 1) else {
        return false;
    };
    dom.privileged && SHIM_PORTS.iter().all(|&(s, e)| last < s || port > e)
}

/// Reads up to `out.len()` instruction bytes at `rip`; returns how many were readable.
fn fetch<M: Machine + ?Sized>(m: &mut M, dom: &Domain, rip: u64, out: &mut [u8]) -> usize {
    let g = GuestMemory {
        machine: m,
        l4: dom.active_l4(),
    };
    for (i, b) in out.iter_mut().enumerate() {
        let mut one = [0u8];
        match rip.checked_add(i as u64).map(|a| g.read(a, &mut one)) {
            Some(Ok(())) => *b = one[0],
            _ => return i,
        }
    }
    out.len()
}

fn gpr(r: &mut crate::trap::TrapFrame, n: u8) -> &mut u64 {
    match n & 15 {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    }
}

/// `pv_emul_instruction_done`: skip the instruction; single-stepping raises #DB.
fn done(dom: &mut Domain, len: usize) -> Outcome {
    let r = &mut dom.regs;
    r.rip = r.rip.wrapping_add(len as u64);
    r.rflags &= !eflags::RF;
    if r.rflags & eflags::TF != 0 {
        Outcome::Raise(Fault::debug())
    } else {
        Outcome::Done
    }
}

fn cpuid(policy: &CpuidPolicy, dom: &mut Domain) {
    let r = &mut dom.regs;
    let [a, b, c, d] = policy.lookup(r.rax as u32, r.rcx as u32);
    (r.rax, r.rbx, r.rcx, r.rdx) = (a as u64, b as u64, c as u64, d as u64);
}

/// The vector `n` of the `int n` (`cd nn`) at the guest's RIP, if that is what is
/// there. Hardware also reports it in the #GP error code, as `n << 3 | 2`; QEMU's TCG
/// (7.2) reports `n << 4 | 2` in long mode (it scales by the 16-byte gate size), so
/// the instruction is the reliable source and the error code only the fallback.
pub fn softint_vector<M: Machine + ?Sized>(m: &mut M, dom: &Domain) -> Option<u8> {
    let mut insn = [0u8; 2];
    (fetch(m, dom, dom.regs.rip, &mut insn) == insn.len() && insn[0] == 0xcd).then_some(insn[1])
}

/// #UD: the forced-emulation prefix (Xen's `emulate_forced_invalid_op`).
pub fn forced_invalid_op<M: Machine + ?Sized>(
    m: &mut M,
    policy: &CpuidPolicy,
    dom: &mut Domain,
) -> Outcome {
    let rip = dom.regs.rip;
    let mut insn = [0u8; 7];
    let n = fetch(m, dom, rip, &mut insn);
    let sig = FORCED_EMULATION_PREFIX.len();
    if n < sig {
        return Outcome::Raise(Fault::fetch(rip.wrapping_add(n as u64)));
    }
    if insn[..sig] != FORCED_EMULATION_PREFIX {
        return Outcome::NotHandled;
    }
    if n < insn.len() {
        return Outcome::Raise(Fault::fetch(rip.wrapping_add(n as u64)));
    }
    if insn[sig..] != [0x0f, 0xa2] {
        return Outcome::NotHandled;
    }
    cpuid(policy, dom);
    done(dom, insn.len())
}

/// #GP(0) from the guest (Xen's `pv_emulate_privileged_op`).
pub fn privileged_op<M: Machine + ?Sized>(
    m: &mut M,
    policy: &CpuidPolicy,
    dom: &mut Domain,
) -> Outcome {
    let rip = dom.regs.rip;
    let mut insn = [0u8; 15];
    let n = fetch(m, dom, rip, &mut insn);
    let byte = |i: usize| insn.get(i).copied().filter(|_| i < n);
    let mut i = 0;
    let mut opsize16 = false;
    loop {
        match byte(i) {
            None => return Outcome::Raise(Fault::fetch(rip.wrapping_add(i as u64))),
            Some(0x66) => opsize16 = true,
            Some(0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65) => {}
            Some(_) => break,
        }
        i += 1;
    }
    let mut rex = 0;
    if let Some(b @ 0x40..=0x4f) = byte(i) {
        rex = b;
        i += 1;
    }
    let Some(op) = byte(i) else {
        return Outcome::Raise(Fault::fetch(rip.wrapping_add(i as u64)));
    };
    let kernel = dom.vcpu.kernel_mode;
    match op {
        0xfa | 0xfb if dom.vcpu.iopl_ok() => done(dom, i + 1),
        0xe4..=0xe7 | 0xec..=0xef => {
            let (port, len) = if op <= 0xe7 {
                match byte(i + 1) {
                    Some(p) => (p as u16, i + 2),
                    None => return Outcome::Raise(Fault::fetch(rip.wrapping_add(i as u64 + 1))),
                }
            } else {
                (dom.regs.rdx as u16, i + 1)
            };
            let size: u8 = if op & 1 == 0 {
                1
            } else if opsize16 {
                2
            } else {
                4
            };
            if !dom.vcpu.iopl_ok() {
                return Outcome::NotHandled;
            }
            let allowed = io_permitted(dom, port, size);
            let is_in = matches!(op, 0xe4 | 0xe5 | 0xec | 0xed);
            if is_in {
                let v = if allowed {
                    m.port_in(port, size)
                } else {
                    u32::MAX
                };
                let rax = &mut dom.regs.rax;
                *rax = match size {
                    1 => *rax & !0xff | (v & 0xff) as u64,
                    2 => *rax & !0xffff | (v & 0xffff) as u64,
                    _ => v as u64, // 32-bit results zero-extend
                };
            } else if allowed {
                let mask = u32::MAX >> (32 - 8 * size as u32);
                m.port_out(port, size, dom.regs.rax as u32 & mask);
            }
            done(dom, len)
        }
        0x0f => {
            let Some(op2) = byte(i + 1) else {
                return Outcome::Raise(Fault::fetch(rip.wrapping_add(i as u64 + 1)));
            };
            match op2 {
                0xa2 => {
                    cpuid(policy, dom);
                    done(dom, i + 2)
                }
                // The rest is CPL 0 only: the guest kernel, never guest user mode.
                _ if !kernel => Outcome::NotHandled,
                0x06 => {
                    dom.vcpu.set_cr0_ts(false);
                    done(dom, i + 2)
                }
                // No device is passed through, so there is no cache to write back for
                // the guest: a no-op, as Xen does without cache-flush permission.
                0x09 => done(dom, i + 2),
                0x20 | 0x22 => {
                    let Some(modrm) = byte(i + 2) else {
                        return Outcome::Raise(Fault::fetch(rip.wrapping_add(i as u64 + 2)));
                    };
                    let cr = (modrm >> 3) & 7 | (rex & 4) << 1;
                    let reg = modrm & 7 | (rex & 1) << 3;
                    let ok = if op2 == 0x20 {
                        read_cr(dom, cr).map(|v| *gpr(&mut dom.regs, reg) = v)
                    } else {
                        let v = *gpr(&mut dom.regs, reg);
                        write_cr(m, dom, cr, v)
                    };
                    match ok {
                        Some(()) => done(dom, i + 3),
                        None => Outcome::NotHandled,
                    }
                }
                0x30 => {
                    let r = &dom.regs;
                    let val = (r.rdx & 0xffff_ffff) << 32 | (r.rax & 0xffff_ffff);
                    let msr = r.rcx as u32;
                    if crate::pv::msr::write(&mut dom.vcpu, msr, val) {
                        done(dom, i + 2)
                    } else {
                        log::warn!("d{}: WRMSR {msr:#x} <- {val:#x} refused: #GP", dom.id);
                        Outcome::NotHandled
                    }
                }
                0x32 => {
                    let msr = dom.regs.rcx as u32;
                    match crate::pv::msr::read(&dom.vcpu, msr) {
                        Some(v) => {
                            dom.regs.rax = v & 0xffff_ffff;
                            dom.regs.rdx = v >> 32;
                            done(dom, i + 2)
                        }
                        None => {
                            log::warn!("d{}: RDMSR {msr:#x} refused: #GP", dom.id);
                            Outcome::NotHandled
                        }
                    }
                }
                _ => Outcome::NotHandled,
            }
        }
        _ => Outcome::NotHandled,
    }
}

fn read_cr(dom: &Domain, cr: u8) -> Option<u64> {
    let v = &dom.vcpu;
    Some(match cr {
        0 => GUEST_CR0 | if v.cr0_ts { CR0_TS } else { 0 },
        2 => v.cr2,
        // A PV guest's CR3 holds the machine frame of its (kernel) L4.
        3 => dom.l4 << 12,
        4 => v.cr4,
        _ => return None,
    })
}

fn write_cr<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, cr: u8, val: u64) -> Option<()> {
    match cr {
        // Only TS may change (Xen: "Attempt to change unmodifiable CR0 flags").
        0 if (val ^ GUEST_CR0) & !CR0_TS == 0 => dom.vcpu.set_cr0_ts(val & CR0_TS != 0),
        2 => {
            dom.vcpu.cr2 = val;
            let vi = dom.vcpu_info;
            write_u64(m, vi.mfn, vi.offset + crate::pv::bounce::VCPU_CR2, val);
        }
        // Reloading the current base pointer is a TLB flush, which every return to the
        // guest performs anyway. Switching tables goes through the validated
        // new_baseptr of the PV MMU (MMUEXT_NEW_BASEPTR); until that is wired here, a
        // different CR3 is refused.
        3 if val >> 12 == dom.l4 => {}
        3 => {
            log::warn!(
                "d{}: mov to CR3 {val:#x} needs MMUEXT_NEW_BASEPTR: #GP",
                dom.id
            );
            return None;
        }
        4 => dom.vcpu.cr4 = GUEST_CR4,
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use crate::pv::bounce::upcall_mask;
    use crate::pv::emulate;
    use crate::pv::traps::{handle, Crash};
    use crate::testing::traps::*;
    use crate::testing::world::{World, BASE, SCRATCH};
    use xen_sys::*;

    fn run_insn(w: &mut World, bytes: &[u8], vector: u64) -> Result<(), Crash> {
        w.poke(SCRATCH + 0x2000, bytes);
        w.dom.regs.rip = SCRATCH + 0x2000;
        w.dom.regs.rsp = SCRATCH + 0x1000;
        raise(w, vector, 0, 0)
    }

    #[test]
    fn forced_cpuid_and_faulting_cpuid() {
        let mut w = world();
        w.dom.regs.rax = 0x4000_0000;
        run_insn(&mut w, &[0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2], 6).unwrap();
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2007);
        assert_eq!(
            (w.dom.regs.rax, w.dom.regs.rbx),
            (0x4000_0005, XEN_CPUID_SIGNATURE_EBX as u64)
        );
        // A plain ud2 is the guest's #UD; a plain cpuid that faulted is emulated too.
        run_insn(&mut w, &[0x0f, 0x0b, 0x90], 6).unwrap();
        assert_eq!(w.dom.regs.rip, H + 6);
        w.dom.regs.rax = 0;
        run_insn(&mut w, &[0x0f, 0xa2], 13).unwrap();
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2002);
        assert_eq!(w.dom.regs.rax, 0xd);
        // The prefix at the end of the mapped memory: #PF for the guest.
        let mut w = world();
        w.dom.regs.rip = w.v_end - 3;
        w.dom.regs.vector = 6;
        handle(&mut w.m, &policy(), &mut w.dom, 0).unwrap();
        assert_eq!(w.dom.regs.rip, H + 14);
        assert_eq!(w.dom.vcpu.cr2, w.v_end);
    }

    #[test]
    fn privileged_instructions() {
        let mut w = world();
        // wrmsr FS_BASE; rdmsr EFER; mov %cr0,%rax; mov %cr3,%r9; wbinvd; clts.
        (w.dom.regs.rcx, w.dom.regs.rdx, w.dom.regs.rax) = (0xc000_0100, 0x1, 0x2000);
        run_insn(&mut w, &[0x0f, 0x30], 13).unwrap();
        assert_eq!(w.dom.vcpu.fs_base, 0x1_0000_2000);
        w.dom.regs.rcx = 0xc000_0080;
        run_insn(&mut w, &[0x0f, 0x32], 13).unwrap();
        assert_eq!((w.dom.regs.rax, w.dom.regs.rdx), (0xd01, 0));
        w.dom.vcpu.cr0_ts = true;
        run_insn(&mut w, &[0x0f, 0x20, 0xc0], 13).unwrap();
        assert_eq!(w.dom.regs.rax, emulate::GUEST_CR0 | 8);
        run_insn(&mut w, &[0x41, 0x0f, 0x20, 0xd9], 13).unwrap();
        assert_eq!(w.dom.regs.r9, w.dom.l4 << 12);
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2004);
        run_insn(&mut w, &[0x0f, 0x09], 13).unwrap();
        run_insn(&mut w, &[0x0f, 0x06], 13).unwrap();
        assert!(!w.dom.vcpu.cr0_ts);
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2002);
        // mov %rax,%cr0 changing more than TS, reading LSTAR, hlt: #GP(0) to the guest.
        for insn in [
            &[0x0f, 0x22, 0xc0][..],
            &[0x0f, 0x32],
            &[0xf4],
            &[0x0f, 0x22, 0xd8],
        ] {
            (w.dom.regs.rax, w.dom.regs.rcx) = (0, 0xc000_0082);
            run_insn(&mut w, insn, 13).unwrap();
            assert_eq!(w.dom.regs.rip, H + 13, "{insn:x?}");
            assert_eq!(frame(&mut w, 8)[2], 0);
        }
        // From guest user mode even rdmsr is #GP.
        let mut w = world();
        to_user(&mut w);
        w.dom.regs.rcx = 0xc000_0080;
        run_insn(&mut w, &[0x0f, 0x32], 13).unwrap();
        assert_eq!(w.dom.regs.rip, H + 13);
    }

    #[test]
    fn port_io_and_cli_sti_need_the_virtual_iopl() {
        let mut w = world();
        // IOPL 0: cli and out are #GP.
        run_insn(&mut w, &[0xfa], 13).unwrap();
        assert_eq!(w.dom.regs.rip, H + 13);
        run_insn(&mut w, &[0xe6, 0x80], 13).unwrap();
        assert_eq!(w.dom.regs.rip, H + 13);
        assert!(w.m.port_writes.is_empty());
        // Kernel-mode IOPL 1: cli/sti do nothing, ports work except the shim's.
        w.dom.vcpu.iopl = 1 << 12;
        let mask = upcall_mask(&w.m, &w.dom);
        run_insn(&mut w, &[0xfa], 13).unwrap();
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2001);
        assert_eq!(upcall_mask(&w.m, &w.dom), mask, "cli is not event masking");
        w.dom.regs.rax = 0x1234_5678;
        run_insn(&mut w, &[0xe6, 0x80], 13).unwrap();
        w.dom.regs.rdx = 0xcfc;
        run_insn(&mut w, &[0xef], 13).unwrap();
        run_insn(&mut w, &[0x66, 0xef], 13).unwrap();
        w.dom.regs.rdx = 0x3f8;
        run_insn(&mut w, &[0xee], 13).unwrap();
        assert_eq!(
            w.m.port_writes,
            [(0x80, 1, 0x78), (0xcfc, 4, 0x1234_5678), (0xcfc, 2, 0x5678)]
        );
        w.dom.regs.rax = u64::MAX;
        run_insn(&mut w, &[0xe4, 0x71], 13).unwrap();
        assert_eq!(w.dom.regs.rax, !0xff | 0x71);
        w.dom.regs.rax = 0;
        run_insn(&mut w, &[0xe5, 0xf4], 13).unwrap();
        assert_eq!(
            w.dom.regs.rax, 0xffff_ffff,
            "the shim's exit port reads as all ones"
        );
        assert_eq!(w.dom.regs.rip, SCRATCH + 0x2002);
        // An unprivileged domain reaches no port at all.
        let mut w = World::new(false);
        w.dom.vcpu.iopl = 3 << 12;
        w.poke(SCRATCH, &[0xe6, 0x80]);
        w.dom.regs.rip = SCRATCH;
        w.dom.regs.vector = 13;
        handle(&mut w.m, &policy(), &mut w.dom, 0).unwrap();
        assert!(w.m.port_writes.is_empty());
        assert_eq!(w.dom.regs.rip, SCRATCH + 2);
    }

    #[test]
    fn virtual_ts_turns_nm_into_the_guests() {
        let mut w = world();
        raise(&mut w, 7, 0, 0).unwrap();
        assert_eq!(w.dom.regs.rip, BASE + 0x40, "spurious #NM: resume");
        w.dom.vcpu.cr0_ts = true;
        raise(&mut w, 7, 0, 0).unwrap();
        assert_eq!(w.dom.regs.rip, H + 7);
        assert!(!w.dom.vcpu.cr0_ts);
    }
}
