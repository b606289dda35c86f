//! The exception fixtures shared by the trap, emulation, `iret` and multicall tests.

use alloc::vec::Vec;

use super::cpuid::greedy_host;
use super::world::{World, BASE, SCRATCH};
use crate::machine::Machine;
use crate::pv::bounce::set_upcall_mask;
use crate::pv::cpuid::CpuidPolicy;
use crate::pv::traps::{handle, Crash};
use crate::state::vcpu::TrapEntry;

/// Handlers are at `H + vector`.
pub const H: u64 = BASE + 0x100; // handlers: H + vector
/// The kernel stack for user-mode exceptions.
pub const KSTACK: u64 = SCRATCH + 0x3008; // deliberately not 16-byte aligned
/// A free frame to copy the L4 into for a user page table.
pub const USER_L4: u64 = 0x1000 + 2047;

/// The CPUID policy of a greedy host.
pub fn policy() -> CpuidPolicy {
    CpuidPolicy::from_host(greedy_host, 4096)
}

/// A [`World`] with a trap table (every vector to `H + vector`), a kernel stack
/// and a guest frame as a kernel would have it.
pub fn world() -> World {
    let mut w = World::new(true);
    for v in 0..32 {
        w.dom.vcpu.trap_table[v] = TrapEntry {
            address: H + v as u64,
            cs: 0xe033,
            flags: 0,
        };
    }
    w.dom.vcpu.kernel_sp = KSTACK;
    let r = &mut w.dom.regs;
    (r.rcx, r.r11, r.rip, r.rsp) = (0xc1, 0x11, BASE + 0x40, SCRATCH + 0x1000);
    (r.cs, r.ss, r.rflags) = (0xe033, 0xe02b, 0x202);
    w
}

/// Puts the vCPU in guest user mode with its own (copied) user L4.
pub fn to_user(w: &mut World) {
    let l4 = *w.m.frame(w.dom.l4).unwrap();
    assert!(!w.p2m.contains(&USER_L4));
    *w.m.frame_mut(USER_L4).unwrap() = l4;
    w.dom.user_l4 = Some(USER_L4);
    w.dom.vcpu.toggle_guest_mode();
}

/// Sets (`v` != 0) or clears the event upcall mask.
pub fn set_mask(w: &mut World, v: u8) {
    set_upcall_mask(&mut w.m, &w.dom, v != 0);
}

/// Raises exception `vector` with error code `ec` (and CR2 `cr2`) in the domain.
pub fn raise(w: &mut World, vector: u64, ec: u64, cr2: u64) -> Result<(), Crash> {
    w.dom.regs.vector = vector;
    w.dom.regs.error_code = ec;
    handle(&mut w.m, &policy(), &mut w.dom, cr2)
}

/// The `n` words at the domain's stack pointer.
pub fn frame(w: &mut World, n: usize) -> Vec<u64> {
    let b = w.peek(w.dom.regs.rsp, n * 8);
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
