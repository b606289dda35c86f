//! `set_trap_table` (`xen.h`, `trap_info` of `arch-x86/xen.h`; Xen's
//! `do_set_trap_table` in xen/arch/x86/pv/callback.c): installs virtual IDT entries from
//! a list that ends at an entry with address 0. A NULL list clears the whole table. A
//! non-canonical handler stops the call with -EINVAL, keeping the entries before it; an
//! unreadable entry is -EFAULT. Long lists are preempted (a continuation) as in Xen.

use xen_sys::*;

use super::env::{continuation, Env};
use super::error::Result;
use super::guest::element;
use crate::domain::Domain;
use crate::machine::Machine;
use crate::state::vcpu::TrapEntry;

/// Entries handled before the call is preempted and re-issued.
const BATCH: usize = 256;

pub fn set_trap_table<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    list: u64,
) -> Result<i64> {
    if list == 0 {
        dom.vcpu.trap_table = [TrapEntry::default(); crate::state::vcpu::NR_VECTORS];
        return Ok(0);
    }
    for done in 0.. {
        let at = element::<trap_info>(list, done as u64);
        let t: trap_info = env.read(dom, at)?;
        if t.address == 0 {
            return Ok(0);
        }
        if !crate::paging::is_canonical(t.address) {
            return Err(XEN_EINVAL.into());
        }
        // fixup_guest_code_selector: an RPL-0 selector becomes RPL 3.
        let cs = if t.cs & 3 == 0 { t.cs | 3 } else { t.cs };
        dom.vcpu.trap_table[t.vector as usize] = TrapEntry {
            address: t.address,
            cs,
            flags: t.flags,
        };
        if done + 1 >= BATCH && !dom.vcpu.in_multicall {
            let next = element::<trap_info>(list, done as u64 + 1);
            return Ok(continuation(dom, __HYPERVISOR_set_trap_table, &[next]));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::{World, SCRATCH};
    use super::*;

    fn entry(vector: u8, flags: u8, cs: u16, address: u64) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[0] = vector;
        e[1] = flags;
        e[2..4].copy_from_slice(&cs.to_le_bytes());
        e[8..].copy_from_slice(&address.to_le_bytes());
        e
    }

    #[test]
    fn installs_until_the_zero_entry_and_null_clears() {
        let mut w = World::new(true);
        let mut l = alloc::vec::Vec::new();
        l.extend(entry(14, 0, 0xe030, 0xffff_ffff_8000_1000));
        l.extend(entry(0x80, 3 | 4, 0xe033, 0xffff_ffff_8000_2000));
        l.extend(entry(0, 0, 0, 0));
        l.extend(entry(1, 0, 0, 0xffff_ffff_8000_3000)); // after the end: ignored
        w.poke(SCRATCH, &l);
        assert_eq!(w.call(__HYPERVISOR_set_trap_table, &[SCRATCH]), 0);
        let t = &w.dom.vcpu.trap_table;
        assert_eq!(
            t[14],
            TrapEntry {
                address: 0xffff_ffff_8000_1000,
                cs: 0xe033,
                flags: 0
            }
        );
        assert_eq!(t[0x80].dpl(), 3);
        assert!(t[0x80].interrupt_gate());
        assert_eq!(t[1].address, 0);
        assert_eq!(w.call(__HYPERVISOR_set_trap_table, &[0]), 0);
        assert_eq!(w.dom.vcpu.trap_table[14].address, 0);
    }

    #[test]
    fn non_canonical_handler_is_einval_and_bad_list_efault() {
        let mut w = World::new(true);
        let mut l = alloc::vec::Vec::new();
        l.extend(entry(3, 3, 0xe033, 0xffff_ffff_8000_1000));
        l.extend(entry(14, 0, 0xe033, 0x8000_0000_0000_0000));
        w.poke(SCRATCH, &l);
        assert_eq!(
            w.call(__HYPERVISOR_set_trap_table, &[SCRATCH]),
            err(XEN_EINVAL)
        );
        assert_eq!(w.dom.vcpu.trap_table[3].address, 0xffff_ffff_8000_1000);
        assert_eq!(w.dom.vcpu.trap_table[14].address, 0);
        assert_eq!(
            w.call(__HYPERVISOR_set_trap_table, &[0x10]),
            err(XEN_EFAULT)
        );
        assert_eq!(
            w.call(__HYPERVISOR_set_trap_table, &[w.v_end]),
            err(XEN_EFAULT)
        );
    }

    #[test]
    fn a_long_list_is_preempted_and_continued() {
        let mut w = World::new(true);
        let l: alloc::vec::Vec<u8> = (0..BATCH + 1)
            .flat_map(|i| entry(i as u8, 0, 0xe033, 0xffff_ffff_8000_0000 + i as u64))
            .chain(entry(0, 0, 0, 0))
            .collect();
        w.poke(SCRATCH, &l);
        w.dom.regs.rip = 0x1002;
        let r = w.call(__HYPERVISOR_set_trap_table, &[SCRATCH]);
        assert_eq!(r, __HYPERVISOR_set_trap_table as i64);
        assert_eq!(w.dom.regs.rip, 0x1000, "the SYSCALL is re-executed");
        assert_eq!(w.dom.regs.rdi, SCRATCH + 16 * BATCH as u64);
        assert_eq!(w.call(__HYPERVISOR_set_trap_table, &[w.dom.regs.rdi]), 0);
        assert_eq!(
            w.dom.vcpu.trap_table[0].address,
            0xffff_ffff_8000_0000 + BATCH as u64
        );
    }
}
