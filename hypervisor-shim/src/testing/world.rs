//! [`World`]: one domain over a test machine, for tests of single hypercalls and traps.

use xen_sys::XEN_ELFNOTE_VIRT_BASE;

use super::TestMachine;
use crate::domain::{Domain, Domains};
use crate::frames::FrameAllocator;
use crate::hypercall::{dispatch, Effects, Env};
use crate::machine::GuestMemory;
use crate::mm::Mm;
use crate::pv::build::elf::{testing::make_elf, XenImage};
use crate::pv::build::{build, DomainConfig};
use crate::time::Clock;
use alloc::string::ToString;
use alloc::vec::Vec;

/// Where the test domain's kernel image starts.
pub const BASE: u64 = 0xffff_ffff_8000_0000;
/// A writable scratch address inside the test domain's kernel image (its bss).
pub const SCRATCH: u64 = BASE + 0x2000;

/// One domain built over a [`TestMachine`], with the frame table, M2P and allocator
/// around it: hypercalls are issued straight to the dispatcher ([`World::call`]).
pub struct World {
    pub m: TestMachine,
    pub frames: FrameAllocator,
    pub m2p: crate::mm::m2p::M2p,
    pub table: crate::mm::FrameTable,
    pub dom: Domain,
    /// The other domains hypercalls may reach (empty unless a test adds some).
    pub others: Domains,
    pub clock: Clock,
    /// Device lines (none unless a test adds some).
    pub irqs: crate::devices::Irqs,
    pub out: Vec<u8>,
    /// End of the domain's initial mapping (nothing is mapped from here on).
    pub v_end: u64,
    /// The domain's frames in pseudo-physical order, as built.
    pub p2m: Vec<crate::machine::Mfn>,
}

impl World {
    /// A domain of 1536 pages; `initial`: the privileged initial domain.
    pub fn new(initial: bool) -> Self {
        let elf = make_elf(
            BASE,
            &[0x90; 0x1000],
            0x8000,
            &[(XEN_ELFNOTE_VIRT_BASE, BASE.to_le_bytes().to_vec())],
        );
        let img = XenImage::parse(&elf).unwrap();
        let mut m = TestMachine::new(0x1000, 2560);
        let mut frames = FrameAllocator::new();
        frames.add(0x1000, 0x1000 + 2560);
        let cfg = DomainConfig {
            domid: 0,
            nr_pages: 1536,
            cmdline: "",
            initial,
        };
        let m2p = crate::mm::m2p::M2p::new(&mut m, &mut frames, 0x1a00).unwrap();
        let shim_l4 = [(crate::mm::m2p::M2p::l4_slot(), m2p.l4_entry)];
        let mut table = crate::mm::FrameTable::new(0x1a00, &frames, &m2p, &shim_l4);
        let built = build(&mut m, &mut frames, &img, &cfg, &shim_l4).unwrap();
        for (pfn, &mfn) in built.p2m.iter().enumerate() {
            m2p.set(&mut m, mfn, pfn as u64);
        }
        crate::pv::build::adopt_domain(&mut table, &mut m, 0, initial, &built).unwrap();
        let v_end = built.layout.v_end;
        let p2m = built.p2m.clone();
        World {
            m,
            frames,
            m2p,
            table,
            dom: Domain::new(0, "test".to_string(), initial, built.initial()),
            others: Domains::new(),
            clock: Clock::new(1_000_000_000, 0, 0, 0),
            irqs: Default::default(),
            p2m,
            out: Vec::new(),
            v_end,
        }
    }

    /// Issues hypercall `nr` with `args` and returns RAX.
    pub fn call(&mut self, nr: u32, args: &[u64]) -> i64 {
        let r = &mut self.dom.regs;
        r.rax = nr as u64;
        let regs = [&mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8];
        for (reg, a) in regs
            .into_iter()
            .zip(args.iter().chain(core::iter::repeat(&0)))
        {
            *reg = *a;
        }
        let out = &mut self.out;
        let mut console = |b: &[u8]| out.extend_from_slice(b);
        let mut env = Env {
            machine: &mut self.m,
            console: &mut console,
            cmdline: "dom0_mem=64M -- x",
            mm: Mm {
                table: &mut self.table,
                alloc: &mut self.frames,
                m2p: &self.m2p,
            },
            domains: &mut self.others,
            clock: &self.clock,
            irqs: &mut self.irqs,
            effects: Effects::default(),
        };
        dispatch(&mut env, &mut self.dom);
        self.dom.regs.rax as i64
    }

    /// Writes `bytes` at `va` of the domain's memory.
    pub fn poke(&mut self, va: u64, bytes: &[u8]) {
        GuestMemory {
            machine: &mut self.m,
            l4: self.dom.l4,
        }
        .write(va, bytes)
        .unwrap();
    }

    /// Reads `n` bytes at `va` of the domain's memory.
    pub fn peek(&mut self, va: u64, n: usize) -> Vec<u8> {
        let mut v = alloc::vec![0; n];
        GuestMemory {
            machine: &mut self.m,
            l4: self.dom.l4,
        }
        .read(va, &mut v)
        .unwrap();
        v
    }
}
