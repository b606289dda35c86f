//! The attacks of `examples/attack` and what upstream Xen 4.17 answers to each (run as
//! dom0 under QEMU TCG, recorded with scenario `xen-attack-all`/`xen-attack-iret-bogus`).
//! This one table drives both the shim scenarios (`attack-NAME`: the shim must answer
//! as Xen does) and the Xen reference scenarios, so an expectation lives in one place.

/// What the hypervisor answers to an attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The guest prints `attack NAME: result TEXT`, then its legitimate call succeeds
    /// and it powers off.
    Result(&'static str),
    /// The hypervisor crashes the domain.
    Crash,
}

/// One attack: its command-line name, what it does, and Xen 4.17's answer.
pub struct Attack {
    pub name: &'static str,
    pub what: &'static str,
    pub xen: Answer,
}

use Answer::{Crash, Result as R};

/// Every attack, in the order `attack all` runs them (the guest's own order).
pub const ATTACKS: &[Attack] = &[
    Attack { name: "map-beyond-ram", what: "update_va_mapping of a frame beyond RAM (paddr 2^48)", xen: R("-1 EPERM") },
    Attack { name: "map-m2p-writable", what: "update_va_mapping of an M2P frame (XENMEM_machphys_mfn_list) writable", xen: R("-16 EBUSY") },
    Attack { name: "pt-writable-uvm", what: "update_va_mapping making a live L1 table writable", xen: R("-16 EBUSY") },
    Attack { name: "pt-writable-mmu", what: "mmu_update making a live L1 table writable", xen: R("-16 EBUSY") },
    Attack { name: "pt-direct-write", what: "plain write into a live L1 (through its read-only mapping) of an entry mapping a frame beyond RAM", xen: R("fault #PF error code 0x3") },
    Attack { name: "pin-self-writable", what: "MMUEXT_PIN_L1_TABLE of a frame that maps itself writable", xen: R("-16 EBUSY") },
    Attack { name: "unpin-not-pinned", what: "MMUEXT_UNPIN_TABLE of a frame that is not pinned", xen: R("-22 EINVAL") },
    Attack { name: "double-pin", what: "MMUEXT_PIN_L1_TABLE twice on the same frame", xen: R("-22 EINVAL") },
    Attack { name: "unpin-current-l4", what: "unpin the running L4 (allowed), then map it writable", xen: R("-16 EBUSY") },
    Attack { name: "baseptr-non-l4", what: "MMUEXT_NEW_BASEPTR to a writable data frame", xen: R("-22 EINVAL") },
    Attack { name: "baseptr-foreign", what: "MMUEXT_NEW_BASEPTR to an M2P frame (not ours)", xen: R("-22 EINVAL") },
    Attack { name: "l4-hypervisor-slot", what: "mmu_update of L4 slot 256 (hypervisor range)", xen: R("-22 EINVAL") },
    Attack { name: "pse-superpage", what: "mmu_update of a 2 MiB PSE entry in an L2", xen: R("-22 EINVAL") },
    Attack { name: "linear-pt-writable", what: "mmu_update of a writable self-referencing L4 entry", xen: R("-22 EINVAL") },
    Attack { name: "mmu-overrun", what: "mmu_update whose count runs off its buffer into an unmapped page", xen: R("-14 EFAULT") },
    Attack { name: "mmu-unmapped-ptr", what: "mmu_update with the request pointer in an unmapped page", xen: R("-14 EFAULT") },
    Attack { name: "mmu-hypervisor-ptr", what: "mmu_update with the request pointer in the hypervisor's range", xen: R("-14 EFAULT") },
    Attack { name: "machphys-foreign", what: "MMU_MACHPHYS_UPDATE of an M2P frame (not ours)", xen: R("-22 EINVAL") },
    Attack { name: "uvm-noncanonical", what: "update_va_mapping of a non-canonical address", xen: R("-22 EINVAL") },
    Attack { name: "multicall-overrun", what: "multicall whose list runs off its buffer into an unmapped page", xen: R("-14 EFAULT") },
    Attack { name: "trap-noncanonical", what: "set_trap_table with a non-canonical handler", xen: R("-22 EINVAL") },
    Attack { name: "increase-huge", what: "increase_reservation of 2^40 extents of order 30 (0 extents done)", xen: R("0") },
    Attack { name: "decrease-not-owned", what: "decrease_reservation of pfns we do not have (0 extents done)", xen: R("0") },
    Attack { name: "mmuext-unknown", what: "mmuext_op with command 99", xen: R("-38 ENOSYS") },
    Attack { name: "set-gdt-bad", what: "set_gdt on a frame beyond RAM", xen: R("-22 EINVAL") },
    Attack { name: "update-desc-ring0", what: "update_descriptor with a DPL-0 code descriptor (Xen demotes it to DPL 3)", xen: R("0 stored 0x00affa000000ffff") },
    Attack { name: "hypercall-unknown", what: "hypercall number 100", xen: R("-38 ENOSYS") },
    Attack { name: "callback-unregister-event", what: "CALLBACKOP_unregister of the event callback", xen: R("-22 EINVAL") },
    Attack { name: "stack-switch-bad-ss", what: "stack_switch to ring-0 selector 0x10 (Xen forces RPL 3 and accepts)", xen: R("0") },
    Attack { name: "vm-assist-unknown", what: "vm_assist enable of type 31", xen: R("-22 EINVAL") },
    Attack { name: "segbase-noncanonical", what: "set_segment_base(SEGBASE_FS) with a non-canonical base", xen: R("-22 EINVAL") },
    Attack { name: "evtchn-bind-foreign", what: "EVTCHNOP_bind_interdomain to a port left unbound for another domain", xen: R("-22 EINVAL") },
    Attack { name: "evtchn-send-closed", what: "EVTCHNOP_send on a closed port", xen: R("-22 EINVAL") },
    Attack { name: "evtchn-bind-nodomain", what: "EVTCHNOP_bind_interdomain to a domain that does not exist", xen: R("-3 ESRCH") },
    Attack { name: "evtchn-unmask-range", what: "EVTCHNOP_unmask of port 2^20", xen: R("-22 EINVAL") },
    Attack { name: "evtchn-virq-global-vcpu1", what: "EVTCHNOP_bind_virq of the global VIRQ_DOM_EXC on vCPU 1", xen: R("-22 EINVAL") },
    Attack { name: "evtchn-exhaust", what: "EVTCHNOP_alloc_unbound until refused (the per-domain port limit)", xen: R("-28 ENOSPC") },
    Attack { name: "iret-bogus", what: "HYPERVISOR_iret whose frame lies in an unmapped page", xen: Crash },
];

/// The lines an attack must print, in order, before the domain ends.
pub fn expected_lines(a: &Attack) -> Vec<String> {
    match a.xen {
        Answer::Result(r) => vec![
            format!("attack {}: result {r}", a.name),
            format!("attack {}: legitimate call ok", a.name),
        ],
        Answer::Crash => vec![format!("attack {}: ", a.name)],
    }
}

/// The line `attack all` prints when it is done.
pub const ALL_DONE: &str = "attack: all non-fatal attacks done";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_enough() {
        let mut names: Vec<_> = ATTACKS.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ATTACKS.len());
        assert!(ATTACKS.len() >= 22);
    }

    #[test]
    fn the_guest_knows_every_attack_in_the_same_order() {
        let src = std::fs::read_to_string(
            crate::bindgen::workspace_root().join("examples/attack/src/main.rs"),
        )
        .unwrap();
        let mut at = 0;
        for a in ATTACKS {
            let needle = format!("name: \"{}\",", a.name);
            let found = src[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{} missing or out of order in the guest", a.name));
            at += found + needle.len();
        }
    }
}
