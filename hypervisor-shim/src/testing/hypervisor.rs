//! Many domains through the [`Hypervisor`] entry point, driven the way the arch layer
//! drives it: an entry from the current domain (a hypercall or the timer interrupt),
//! then whatever it decides.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use xen_sys::*;

use super::TestMachine;
use crate::frames::FrameAllocator;
use crate::hypervisor::{DomainSpec, Hypervisor, Next};
use crate::machine::{GuestFault, GuestMemory};
use crate::mm::m2p::M2p;
use crate::mm::FrameTable;
use crate::pv::build::elf::testing::make_elf;
use crate::pv::cpuid::CpuidPolicy;
use crate::time::Clock;
use crate::trap::SYSCALL_VECTOR;

/// Where every test domain's kernel image starts.
pub const BASE: u64 = 0xffff_ffff_8000_0000;
/// A writable scratch address in every test domain (its bss).
pub const SCRATCH: u64 = BASE + 0x2000;
/// A millisecond of system time (ns).
pub const MS: u64 = 1_000_000;

/// A hypervisor over a test machine of `nr_frames` frames (frame 0 left out), with no
/// domain yet; the TSC counts nanoseconds.
pub fn empty(nr_frames: u64) -> Hypervisor<TestMachine> {
    let mut machine = TestMachine::new(0, nr_frames as usize);
    let mut frames = FrameAllocator::new();
    frames.add(1, nr_frames);
    let m2p = M2p::new(&mut machine, &mut frames, nr_frames).unwrap();
    let shim_l4 = vec![(M2p::l4_slot(), m2p.l4_entry)];
    let frame_table = FrameTable::new(nr_frames, &frames, &m2p, &shim_l4);
    Hypervisor::new(
        machine,
        frames,
        m2p,
        shim_l4,
        frame_table,
        String::new(),
        CpuidPolicy::from_host(super::cpuid::greedy_host, nr_frames),
        Clock::new(1_000_000_000, 0, 1_700_000_000, 0),
    )
}

/// A test kernel image: a page of code at `BASE` and a bss up to `BASE + memsz`.
pub fn test_elf(memsz: u64) -> Vec<u8> {
    make_elf(
        BASE,
        &[0x90; 0x1000],
        memsz,
        &[(XEN_ELFNOTE_VIRT_BASE, BASE.to_le_bytes().to_vec())],
    )
}

/// dom0 (privileged) and domUs 1 and 2, 1100 pages each.
pub fn three() -> Hypervisor<TestMachine> {
    let mut h = empty(8192);
    let elf = test_elf(0x8000);
    for (domid, privileged) in [(0, true), (1, false), (2, false)] {
        h.create_domain(&DomainSpec {
            domid,
            name: "",
            image: &elf,
            nr_pages: 1100,
            cmdline: "",
            privileged,
            backends_in_dom0: false,
        })
        .unwrap();
    }
    assert!(matches!(h.start(), Next::Resume { .. }));
    h
}

/// Writes `bytes` at `va` of domain `d`'s memory.
pub fn poke(h: &mut Hypervisor<TestMachine>, d: domid_t, va: u64, bytes: &[u8]) {
    try_poke(h, d, va, bytes).unwrap();
}

/// [`poke`], or the fault the guest's own write would take (it may have unmapped the
/// page, or made it read-only).
pub fn try_poke(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    va: u64,
    bytes: &[u8],
) -> Result<(), GuestFault> {
    let l4 = h.domains[d].l4;
    GuestMemory {
        machine: &mut h.machine,
        l4,
    }
    .write(va, bytes)
}

/// Reads a `u32` at `va` of domain `d`'s memory.
pub fn peek_u32(h: &mut Hypervisor<TestMachine>, d: domid_t, va: u64) -> u32 {
    let l4 = h.domains[d].l4;
    GuestMemory {
        machine: &mut h.machine,
        l4,
    }
    .read_u32(va)
    .unwrap()
}

/// Domain `d` makes hypercall `nr` (it is made the running domain first); returns its
/// result and what the shim decided next.
pub fn call(h: &mut Hypervisor<TestMachine>, d: domid_t, nr: u32, args: &[u64]) -> (i64, Next) {
    h.current = d;
    let mut f = h.domains[d].regs;
    f.vector = SYSCALL_VECTOR;
    f.rax = nr as u64;
    for (reg, a) in [&mut f.rdi, &mut f.rsi, &mut f.rdx, &mut f.r10, &mut f.r8]
        .into_iter()
        .zip(args.iter().chain(core::iter::repeat(&0)))
    {
        *reg = *a;
    }
    h.save_entry_frame(&f);
    let next = h.handle(0, &mut |_| {});
    (h.domains[d].regs.rax as i64, next)
}
