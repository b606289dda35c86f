//! Arbitrary sequences of guest actions over three domains (dom0 and two domUs), with
//! the [`invariants`](super::invariants) checked after every step: the shared driver
//! of the `hypercalls` fuzz target (`fuzz/`) and of the host tests below.
//!
//! The input is read as a list of steps. Each step is one of: a hypercall by a domain
//! (its number biased towards the implemented ones, each argument drawn from what
//! reaches deep: small numbers, addresses in the domain's writable scratch area or its
//! image, frame numbers and PTE-like values, domain ids, raw 64-bit values), bytes
//! written into a domain's scratch area (the structs a hypercall reads), a timer tick,
//! an exception the domain has no handler for, and a domain destroyed. At the end
//! every domain is destroyed and every frame must be free again.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xen_sys::*;

use super::hypervisor::{empty, test_elf, try_poke, BASE, SCRATCH};
use super::invariants::{check, check_all_freed};
use super::TestMachine;
use crate::hypervisor::{DomainSpec, Hypervisor};
use crate::trap::{SYSCALL_VECTOR, TIMER_VECTOR};

/// Machine frames, and pages per domain.
const FRAMES: u64 = 3584;
const PAGES: u64 = 1030;
/// Bytes of each domain's scratch area the steps write and point into.
const SCRATCH_LEN: u64 = 0x4000;
/// Steps run at most (a longer input is cut).
pub const MAX_STEPS: usize = 96;

/// The hypercalls the shim implements, which most steps pick from.
const HYPERCALLS: &[u32] = &[
    __HYPERVISOR_set_trap_table,
    __HYPERVISOR_mmu_update,
    __HYPERVISOR_set_gdt,
    __HYPERVISOR_stack_switch,
    __HYPERVISOR_set_callbacks,
    __HYPERVISOR_fpu_taskswitch,
    __HYPERVISOR_sched_op_compat,
    __HYPERVISOR_update_descriptor,
    __HYPERVISOR_memory_op,
    __HYPERVISOR_multicall,
    __HYPERVISOR_update_va_mapping,
    __HYPERVISOR_set_timer_op,
    __HYPERVISOR_event_channel_op_compat,
    __HYPERVISOR_xen_version,
    __HYPERVISOR_console_io,
    __HYPERVISOR_grant_table_op,
    __HYPERVISOR_vm_assist,
    __HYPERVISOR_update_va_mapping_otherdomain,
    __HYPERVISOR_iret,
    __HYPERVISOR_vcpu_op,
    __HYPERVISOR_set_segment_base,
    __HYPERVISOR_mmuext_op,
    __HYPERVISOR_sched_op,
    __HYPERVISOR_callback_op,
    __HYPERVISOR_event_channel_op,
    __HYPERVISOR_physdev_op,
    __HYPERVISOR_hvm_op,
    __HYPERVISOR_sysctl,
    __HYPERVISOR_domctl,
];

/// The input, read front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One decoded step, kept for the report of a broken invariant.
#[derive(Debug)]
enum Step {
    Hypercall { dom: u16, nr: u64, args: [u64; 6] },
    Poke { dom: u16, va: u64, len: usize },
    Tick,
    Fault { dom: u16, vector: u64 },
    Destroy { dom: u16 },
}

fn arg(input: &mut Input) -> u64 {
    match input.u8() % 8 {
        0 => input.u8() as u64,
        1 => SCRATCH + (input.u16() as u64 % SCRATCH_LEN),
        2 => input.u64(),
        3 => 1 + input.u16() as u64 % FRAMES,
        // A PTE: a frame and low flag bits.
        4 => (1 + input.u16() as u64 % FRAMES) << 12 | (input.u8() as u64 & 0x67),
        5 => (input.u8() % 16) as u64,
        6 => [0, 1, 2, DOMID_SELF as u64, 3, DOMID_IO as u64][input.u8() as usize % 6],
        _ => BASE + input.u16() as u64,
    }
}

fn decode(input: &mut Input) -> Step {
    let op = input.u8();
    let dom = (input.u8() % 3) as u16;
    match op % 16 {
        0..=9 => {
            let nr = HYPERCALLS[input.u8() as usize % HYPERCALLS.len()] as u64;
            Step::Hypercall {
                dom,
                nr,
                args: core::array::from_fn(|_| arg(input)),
            }
        }
        10 => Step::Hypercall {
            dom,
            nr: input.u8() as u64,
            args: core::array::from_fn(|_| arg(input)),
        },
        11 | 12 => Step::Poke {
            dom,
            va: SCRATCH + input.u16() as u64 % SCRATCH_LEN,
            len: (input.u8() % 64) as usize + 1,
        },
        13 => Step::Tick,
        14 => Step::Fault {
            dom,
            vector: [0, 6, 13, 14, 3, 8][input.u8() as usize % 6],
        },
        _ => Step::Destroy { dom },
    }
}

/// Makes `dom` the running domain and enters the shim from it with `f`'s registers
/// (only a domain that is alive and ready for the CPU can enter).
fn enter(h: &mut Hypervisor<TestMachine>, dom: u16, f: impl FnOnce(&mut crate::trap::TrapFrame)) {
    let Some(d) = h.domains.get(dom).filter(|d| !d.dead && d.ready()) else {
        return;
    };
    let mut regs = d.regs;
    f(&mut regs);
    h.current = dom;
    h.save_entry_frame(&regs);
    h.handle(0, &mut |_| {});
}

fn run_step(h: &mut Hypervisor<TestMachine>, step: &Step, input: &mut Input) {
    match *step {
        Step::Hypercall { dom, nr, args } => enter(h, dom, |r| {
            r.vector = SYSCALL_VECTOR;
            r.rax = nr;
            [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] = args;
        }),
        Step::Poke { dom, va, len } => {
            let data: Vec<u8> = (0..len).map(|_| input.u8()).collect();
            if h.domains.get(dom).is_some_and(|d| !d.dead) {
                // A write to a page the domain unmapped faults in the guest: nothing
                // the shim sees.
                let _ = try_poke(h, dom, va, &data);
            }
        }
        Step::Tick => {
            let cur = h.current;
            if let Some(d) = h.domains.get(cur) {
                let mut regs = d.regs;
                regs.vector = TIMER_VECTOR;
                h.save_entry_frame(&regs);
            }
            h.machine.tsc += 10_000_000;
            h.handle(0, &mut |_| {});
        }
        Step::Fault { dom, vector } => enter(h, dom, |r| {
            r.vector = vector;
            r.error_code = 0;
        }),
        Step::Destroy { dom } => {
            if let Some(d) = h.domains.get_mut(dom) {
                d.destroy = true;
            }
        }
    }
}

/// Three domains over a fresh test machine, and how many frames were free before.
fn machine() -> (Hypervisor<TestMachine>, u64) {
    let mut h = empty(FRAMES);
    let free = h.frames.free_frames();
    let elf = test_elf(0x8000);
    for (domid, privileged) in [(0, true), (1, false), (2, false)] {
        h.create_domain(&DomainSpec {
            domid,
            name: "",
            image: &elf,
            nr_pages: PAGES,
            cmdline: "",
            privileged,
            backends_in_dom0: false,
        })
        .expect("three domains fit");
    }
    h.start();
    (h, free)
}

/// Runs the steps `data` describes; the first invariant broken, with the steps so far.
pub fn try_run(data: &[u8]) -> Result<(), String> {
    let (mut h, free) = machine();
    let mut input = Input(data);
    let mut steps = Vec::new();
    let broken = |steps: &[Step], e: String| {
        let mut report = format!("{e}\nafter:");
        for (i, s) in steps.iter().enumerate() {
            report.push_str(&format!("\n  {i}: {s:?}"));
        }
        report
    };
    while !input.is_empty() && steps.len() < MAX_STEPS {
        let step = decode(&mut input);
        run_step(&mut h, &step, &mut input);
        steps.push(step);
        check(&h).map_err(|e| broken(&steps, e))?;
    }
    // Every domain goes; the reaper runs at the next scheduling decision.
    for d in h.domains.iter_mut() {
        d.destroy = true;
    }
    run_step(&mut h, &Step::Tick, &mut input);
    if !h.domains.is_empty() {
        return Err(broken(
            &steps,
            String::from("domains left after destroying all"),
        ));
    }
    check_all_freed(&h, free).map_err(|e| broken(&steps, e))
}

/// [`try_run`], panicking on a broken invariant (for libFuzzer).
pub fn run(data: &[u8]) {
    if let Err(e) = try_run(data) {
        panic!("invariant broken: {e}");
    }
}

/// Encodes steps as [`try_run`] reads them, for seeds and tests.
pub mod encode {
    use alloc::vec::Vec;

    use super::{HYPERCALLS, SCRATCH_LEN};

    /// A hypercall `nr` (one of the implemented ones) by `dom` with `args`, each
    /// given as a raw 64-bit value.
    pub fn hypercall(out: &mut Vec<u8>, dom: u8, nr: u32, args: &[u64]) {
        let idx = HYPERCALLS
            .iter()
            .position(|&n| n == nr)
            .expect("an implemented hypercall");
        out.extend([0, dom, idx as u8]);
        for i in 0..6 {
            out.push(2);
            out.extend(args.get(i).copied().unwrap_or(0).to_le_bytes());
        }
    }

    /// `bytes` written at `offset` of `dom`'s scratch area, 64 bytes at a time.
    pub fn poke(out: &mut Vec<u8>, dom: u8, offset: u16, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks(64).enumerate() {
            let at = offset as u64 + i as u64 * 64;
            assert!(at < SCRATCH_LEN);
            out.extend([11, dom]);
            out.extend((at as u16).to_le_bytes());
            out.push(chunk.len() as u8 - 1);
            out.extend(chunk);
        }
    }

    /// A timer tick.
    pub fn tick(out: &mut Vec<u8>) {
        out.extend([13, 0]);
    }

    /// Domain `dom` destroyed.
    pub fn destroy(out: &mut Vec<u8>, dom: u8) {
        out.extend([15, dom]);
    }
}

/// Sequences that do real work, as seeds for the fuzzer's corpus and for the tests:
/// (name, input).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use encode::*;
    let mut out = Vec::new();

    // An interdomain channel: d1 offers a port to d2, d2 binds it and sends, d1 closes.
    let mut s = Vec::new();
    let mut alloc = [0u8; 8];
    alloc[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    alloc[2..4].copy_from_slice(&2u16.to_le_bytes());
    poke(&mut s, 1, 0, &alloc);
    let evtchn = __HYPERVISOR_event_channel_op;
    hypercall(&mut s, 1, evtchn, &[EVTCHNOP_alloc_unbound as u64, SCRATCH]);
    let mut bind = [0u8; 12];
    bind[0..2].copy_from_slice(&1u16.to_le_bytes());
    bind[4..8].copy_from_slice(&1u32.to_le_bytes());
    poke(&mut s, 2, 0, &bind);
    hypercall(
        &mut s,
        2,
        evtchn,
        &[EVTCHNOP_bind_interdomain as u64, SCRATCH],
    );
    poke(&mut s, 2, 0x100, &1u32.to_le_bytes());
    hypercall(&mut s, 2, evtchn, &[EVTCHNOP_send as u64, SCRATCH + 0x100]);
    poke(&mut s, 1, 0x100, &1u32.to_le_bytes());
    hypercall(&mut s, 1, evtchn, &[EVTCHNOP_close as u64, SCRATCH + 0x100]);
    out.push(("evtchn-interdomain", s));

    // dom0 maps d1's console page through its grant (as xenconsoled does), and unmaps it.
    let mut s = Vec::new();
    let mut map = [0u8; 32];
    map[0..8].copy_from_slice(&(SCRATCH + 0x3000).to_le_bytes());
    map[8..12].copy_from_slice(&GNTMAP_host_map.to_le_bytes());
    map[12..16].copy_from_slice(&GNTTAB_RESERVED_CONSOLE.to_le_bytes());
    map[16..18].copy_from_slice(&1u16.to_le_bytes());
    poke(&mut s, 0, 0, &map);
    let gnttab = __HYPERVISOR_grant_table_op;
    hypercall(
        &mut s,
        0,
        gnttab,
        &[GNTTABOP_map_grant_ref as u64, SCRATCH, 1],
    );
    tick(&mut s);
    // The unmap names the handle the map wrote back (the first: 0).
    let mut unmap = [0u8; 24];
    unmap[0..8].copy_from_slice(&(SCRATCH + 0x3000).to_le_bytes());
    poke(&mut s, 0, 0x100, &unmap);
    hypercall(
        &mut s,
        0,
        gnttab,
        &[GNTTABOP_unmap_grant_ref as u64, SCRATCH + 0x100, 1],
    );
    out.push(("grant-map-unmap", s));

    // A domain zaps one of its own pages, then takes a fault on it and dies.
    let mut s = Vec::new();
    let uvm = __HYPERVISOR_update_va_mapping;
    hypercall(&mut s, 1, uvm, &[SCRATCH + 0x3000, 0, UVMF_INVLPG]);
    s.extend([14, 1, 3]);
    destroy(&mut s, 2);
    tick(&mut s);
    out.push(("unmap-fault-destroy", s));

    // A multicall of two xen_version calls and a yield.
    let mut s = Vec::new();
    let mut list = Vec::new();
    for (op, a0) in [
        (__HYPERVISOR_xen_version, XENVER_version as u64),
        (__HYPERVISOR_xen_version, XENVER_pagesize as u64),
        (__HYPERVISOR_sched_op, SCHEDOP_yield as u64),
    ] {
        list.extend((op as u64).to_le_bytes());
        list.extend([0u8; 8]);
        list.extend(a0.to_le_bytes());
        list.extend([0u8; 40]);
    }
    poke(&mut s, 0, 0, &list);
    hypercall(&mut s, 0, __HYPERVISOR_multicall, &[SCRATCH, 3]);
    out.push(("multicall", s));
    out
}

#[cfg(test)]
mod tests;
