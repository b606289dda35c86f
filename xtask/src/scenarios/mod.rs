//! The QEMU scenarios of `cargo xtask test`: boot images, read the serial log, check
//! that given lines appear in order and that the run ends the expected way. This is
//! where behaviour that host tests cannot reach (boot, paging, traps, real Xen) is
//! tested.
//!
//! * [`harness`]: what a scenario is and the check most of them are;
//! * [`expected`]: the lines they wait for, per guest and per hypervisor;
//! * [`pairs`]: one guest on the shim and on Xen 4.17, written once (`NAME`, `xen-NAME`);
//! * [`attacks`]: the one attack table (on the hypervisor and on dom0);
//! * [`boot`], [`dom0`], [`blk`], [`net`], [`third_party`]: the scenarios of the shim
//!   alone, by family.
//!
//! This file is the catalog: which scenarios exist, in the order they run.

pub mod attacks;
mod blk;
mod boot;
mod dom0;
pub mod expected;
pub mod harness;
mod http;
pub use http::free_port;
mod net;
mod pairs;
mod third_party;

pub use harness::{Ctx, Scenario};

use harness::Hypervisor::{Shim, Xen};

/// Every scenario, in the order `cargo xtask test` runs them: the shim's (the attacks
/// on the hypervisor after the single-guest ones), then Xen's references, with
/// `xen-hello` early as a quick sign that Xen boots at all.
pub fn all() -> Vec<Scenario> {
    let mut v = vec![pairs::HELLO.on(Shim), pairs::CRASH.on(Shim)];
    v.extend(boot::crashes());
    v.extend([
        pairs::PAGETABLES.on(Shim),
        pairs::USERMODE.on(Shim),
        pairs::CPU.on(Shim),
        pairs::IRET_MASKED.on(Shim),
    ]);
    v.extend(third_party::alone());
    v.push(boot::hello3());
    v.extend([pairs::TIMERS.on(Shim), pairs::PINGPONG_LOOPBACK.on(Shim)]);
    v.extend(boot::side_by_side());
    v.push(attacks::evtchn_exhaust_domu());
    v.push(boot::dom0_ctl());
    v.push(pairs::DOM0_CTL_ALONE.on(Shim));
    v.extend(attacks::on_the_shim());
    v.push(pairs::HELLO.on(Xen));
    v.extend(dom0::all());
    v.extend(blk::all());
    v.extend(net::all());
    v.extend(third_party::grub_domu());
    v.extend(attacks::on_dom0());
    v.extend(
        [
            &pairs::CRASH,
            &pairs::PAGETABLES,
            &pairs::USERMODE,
            &pairs::DOM0_CTL_ALONE,
            &pairs::CPU,
            &pairs::IRET_MASKED,
            &pairs::TIMERS,
            &pairs::PINGPONG_LOOPBACK,
        ]
        .map(|p| p.on(Xen)),
    );
    v.extend(attacks::on_xen());
    v
}

/// `cargo xtask test --list`.
pub fn list() {
    for s in all() {
        println!("{:<32} {}", s.name, s.description);
    }
}

#[cfg(test)]
mod tests {
    use super::harness::Hypervisor;
    use super::*;

    #[test]
    fn names_are_unique() {
        let all = all();
        let mut names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a scenario name appears twice");
    }

    /// Every pair runs on both hypervisors, each side once.
    #[test]
    fn every_pair_is_in_the_catalog_on_both_hypervisors() {
        let all = all();
        for p in pairs::ALL {
            for hv in Hypervisor::BOTH {
                let name = hv.scenario_name(p.name);
                let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
                assert_eq!(found.len(), 1, "{name}");
                assert_eq!(found[0].description, p.side(hv).description);
            }
        }
    }

    /// Every attack of the table is a scenario.
    #[test]
    fn every_attack_is_in_the_catalog() {
        let names: Vec<_> = all().into_iter().map(|s| s.name).collect();
        for a in attacks::ATTACKS {
            assert!(names.contains(&format!("attack-{}", a.name)), "{}", a.name);
        }
    }
}
