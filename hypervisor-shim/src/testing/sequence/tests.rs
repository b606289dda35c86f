use super::*;
use crate::machine::{write_u64, Machine};
use crate::mm::page::PageType;
use crate::paging::{Pte, PRESENT, USER, WRITABLE};
use proptest::prelude::*;

#[test]
fn the_seeds_do_their_work_and_keep_every_invariant() {
    for (name, input) in seeds() {
        try_run(&input).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
}

#[test]
fn the_seeds_reach_the_states_they_are_for() {
    let seeds = seeds();
    let find = |n: &str| seeds.iter().find(|(name, _)| *name == n).unwrap().1.clone();
    // Run the steps by hand to look at the state before the final teardown.
    let steps = |data: &[u8]| {
        let (mut h, _) = machine();
        let mut input = Input(data);
        while !input.is_empty() {
            let step = decode(&mut input);
            run_step(&mut h, &step, &mut input);
            check(&h).unwrap();
        }
        h
    };
    let h = steps(&find("evtchn-interdomain"));
    // d1 closed its end: d2's port is unbound again, waiting for d1.
    assert_eq!(
        h.domains[2].evtchn.get(1).unwrap().binding,
        Binding::Unbound { remote: 1 }
    );
    let h = steps(&find("grant-map-unmap"));
    assert_eq!(
        h.domains[0].grant.handles(),
        Vec::<u32>::new(),
        "mapped and unmapped"
    );
    assert!(h.domains[1]
        .grant
        .active(GNTTAB_RESERVED_CONSOLE)
        .is_some_and(|a| a.pin == 0));
    let h = steps(&find("unmap-fault-destroy"));
    assert!(h.domains.get(2).is_none(), "destroyed and reaped");
    assert!(h.domains[1].dead, "crashed on its own unmapped page");
    let h = steps(&find("multicall"));
    assert_eq!(h.domains[0].regs.rax, 0);
}

use crate::state::evtchn::Binding;

/// The checker itself: a writable mapping of a page table, a foreign frame in a
/// domU's tables and a one-sided channel are each caught.
#[test]
fn broken_invariants_are_caught() {
    let (mut h, _) = machine();
    check(&h).unwrap();
    let live = |h: &Hypervisor<TestMachine>, d: u16, ty: PageType| {
        h.frame_table
            .pages()
            .find(|(_, p)| {
                p.owner == crate::mm::page::Owner::Domain(d) && p.ty == ty && p.is_live_table()
            })
            .map(|(mfn, _)| mfn)
            .unwrap()
    };
    // The last slot of an L1 of d1 (written behind the frame table's back).
    let l1 = live(&h, 1, PageType::L1);
    let free_slot = 511;
    let old = crate::machine::read_u64(h.machine.frame(l1).unwrap(), free_slot);
    let set =
        |h: &mut Hypervisor<TestMachine>, v: u64| write_u64(&mut h.machine, l1, free_slot * 8, v);
    // Its own L1, mapped writable into itself.
    set(&mut h, Pte::new(l1, PRESENT | WRITABLE | USER).0);
    assert!(check(&h).unwrap_err().contains("writable"));
    // d2's page table, read-only, in d1's tables.
    let other = live(&h, 2, PageType::L1);
    set(&mut h, Pte::new(other, PRESENT | USER).0);
    assert!(check(&h)
        .unwrap_err()
        .contains("neither its own nor granted"));
    set(&mut h, old);
    check(&h).unwrap();
    // A channel only one side knows.
    h.domains[1]
        .evtchn
        .alloc(Binding::Interdomain { remote: 2, port: 5 })
        .unwrap();
    assert!(check(&h).unwrap_err().contains("bound to d2 port 5"));
}

#[test]
fn frames_left_owned_are_caught() {
    let (mut h, free) = machine();
    for d in h.domains.iter_mut() {
        d.destroy = true;
    }
    // One frame taken from the allocator and never returned.
    let leaked = h.frames.alloc().unwrap();
    run_step(&mut h, &Step::Tick, &mut Input(&[]));
    assert!(check_all_freed(&h, free).is_err());
    h.frames.free(leaked);
    check_all_freed(&h, free).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn arbitrary_sequences_keep_every_invariant(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Err(e) = try_run(&data) {
            panic!("{e}");
        }
    }
}
