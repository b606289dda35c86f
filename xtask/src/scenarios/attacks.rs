//! The one attack table: every hostile guest's attack, what it targets and what must be
//! seen. It drives the shim scenarios (`attack-NAME`), and for the attacks on the
//! hypervisor the Xen reference scenarios too (`xen-attack-all`, `xen-attack-NAME`), so
//! an expectation lives in one place.
//!
//! Two guests attack, each against its own target ([`Target`]):
//! * examples/attack, alone as dom0, attacks the hypervisor (PV MMU, traps, event
//!   channels, memory ops). The answers are upstream Xen 4.17's, run as dom0 under QEMU
//!   TCG and recorded by the Xen scenarios; the shim must give the same.
//! * examples/hostile, a domU beside examples/dom0 and a well-behaved domU, attacks
//!   dom0's xenstored and the grant tables. dom0 must survive and serve the other domU
//!   to the end. Xen has no reference here (no toolstack to start a domU).

use std::time::Duration;

use super::expected::{self, dom0 as dom0_lines};
use super::harness::{
    bundle_lines, check, domu, Boot, BundleGuest, Check, Ctx, End, Failure, Hypervisor, Pass,
    Scenario,
};
use crate::qemu::Outcome;

/// What the hypervisor answers to an attack of examples/attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The guest prints `attack NAME: result TEXT`, then its legitimate call succeeds
    /// and it powers off.
    Result(&'static str),
    /// The hypervisor crashes the domain.
    Crash,
}

/// What an attack targets, which says the guest that runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The hypervisor, attacked by examples/attack (command line: the attack's name);
    /// Xen 4.17's answer.
    Hypervisor(Answer),
    /// dom0, attacked by examples/hostile as domU 1 with this command line; the lines
    /// it must print (in any order).
    Dom0 {
        cmdline: &'static str,
        expect: &'static [&'static str],
    },
    /// dom0's blkback and devices, attacked by examples/hostile (command line: the
    /// attack's name) with a vbd of its own, beside examples/kvstore on another disk;
    /// the lines hostile must print (in any order).
    Blkback { expect: &'static [&'static str] },
    /// dom0's netback and bridge, attacked by examples/hostile (command line: the
    /// attack's name) on a vif of its own, beside two nettest domUs moving 4 MiB; the
    /// lines hostile and dom0 must print (in any order).
    Netback { expect: &'static [&'static str] },
}

/// One attack.
pub struct Attack {
    /// Its scenario is `attack-NAME`.
    pub name: &'static str,
    pub what: &'static str,
    pub target: Target,
}

/// An attack of examples/attack on the hypervisor.
const fn pv(name: &'static str, what: &'static str, xen: Answer) -> Attack {
    Attack {
        name,
        what,
        target: Target::Hypervisor(xen),
    }
}

/// An attack of examples/hostile on dom0.
const fn hostile(
    name: &'static str,
    what: &'static str,
    cmdline: &'static str,
    expect: &'static [&'static str],
) -> Attack {
    Attack {
        name,
        what,
        target: Target::Dom0 { cmdline, expect },
    }
}

/// An attack of examples/hostile on blkback; its command line is `blk-NAME`.
const fn blk(name: &'static str, what: &'static str, expect: &'static [&'static str]) -> Attack {
    Attack {
        name,
        what,
        target: Target::Blkback { expect },
    }
}

/// An attack of examples/hostile on netback; its command line is `net-NAME`.
const fn net(name: &'static str, what: &'static str, expect: &'static [&'static str]) -> Attack {
    Attack {
        name,
        what,
        target: Target::Netback { expect },
    }
}

use Answer::{Crash, Result as R};

/// Every attack: those on the hypervisor in the order `attack all` runs them (the
/// guest's own order), then those on dom0.
#[rustfmt::skip]
pub const ATTACKS: &[Attack] = &[
    pv("map-beyond-ram", "update_va_mapping of a frame beyond RAM (paddr 2^48)", R("-1 EPERM")),
    pv("map-m2p-writable", "update_va_mapping of an M2P frame (XENMEM_machphys_mfn_list) writable", R("-16 EBUSY")),
    pv("pt-writable-uvm", "update_va_mapping making a live L1 table writable", R("-16 EBUSY")),
    pv("pt-writable-mmu", "mmu_update making a live L1 table writable", R("-16 EBUSY")),
    pv("pt-direct-write", "plain write into a live L1 (through its read-only mapping) of an entry mapping a frame beyond RAM", R("fault #PF error code 0x3")),
    pv("pin-self-writable", "MMUEXT_PIN_L1_TABLE of a frame that maps itself writable", R("-16 EBUSY")),
    pv("unpin-not-pinned", "MMUEXT_UNPIN_TABLE of a frame that is not pinned", R("-22 EINVAL")),
    pv("double-pin", "MMUEXT_PIN_L1_TABLE twice on the same frame", R("-22 EINVAL")),
    pv("unpin-current-l4", "unpin the running L4 (allowed), then map it writable", R("-16 EBUSY")),
    pv("baseptr-non-l4", "MMUEXT_NEW_BASEPTR to a writable data frame", R("-22 EINVAL")),
    pv("baseptr-foreign", "MMUEXT_NEW_BASEPTR to an M2P frame (not ours)", R("-22 EINVAL")),
    pv("l4-hypervisor-slot", "mmu_update of L4 slot 256 (hypervisor range)", R("-22 EINVAL")),
    pv("pse-superpage", "mmu_update of a 2 MiB PSE entry in an L2", R("-22 EINVAL")),
    pv("linear-pt-writable", "mmu_update of a writable self-referencing L4 entry", R("-22 EINVAL")),
    pv("mmu-overrun", "mmu_update whose count runs off its buffer into an unmapped page", R("-14 EFAULT")),
    pv("mmu-unmapped-ptr", "mmu_update with the request pointer in an unmapped page", R("-14 EFAULT")),
    pv("mmu-hypervisor-ptr", "mmu_update with the request pointer in the hypervisor's range", R("-14 EFAULT")),
    pv("machphys-foreign", "MMU_MACHPHYS_UPDATE of an M2P frame (not ours)", R("-22 EINVAL")),
    pv("uvm-noncanonical", "update_va_mapping of a non-canonical address", R("-22 EINVAL")),
    pv("multicall-overrun", "multicall whose list runs off its buffer into an unmapped page", R("-14 EFAULT")),
    pv("trap-noncanonical", "set_trap_table with a non-canonical handler", R("-22 EINVAL")),
    pv("increase-huge", "increase_reservation of 2^40 extents of order 30 (0 extents done)", R("0")),
    pv("decrease-not-owned", "decrease_reservation of pfns we do not have (0 extents done)", R("0")),
    pv("mmuext-unknown", "mmuext_op with command 99", R("-38 ENOSYS")),
    pv("set-gdt-bad", "set_gdt on a frame beyond RAM", R("-22 EINVAL")),
    pv("update-desc-ring0", "update_descriptor with a DPL-0 code descriptor (Xen demotes it to DPL 3)", R("0 stored 0x00affa000000ffff")),
    pv("hypercall-unknown", "hypercall number 100", R("-38 ENOSYS")),
    pv("callback-unregister-event", "CALLBACKOP_unregister of the event callback", R("-22 EINVAL")),
    pv("stack-switch-bad-ss", "stack_switch to ring-0 selector 0x10 (Xen forces RPL 3 and accepts)", R("0")),
    pv("vm-assist-unknown", "vm_assist enable of type 31", R("-22 EINVAL")),
    pv("segbase-noncanonical", "set_segment_base(SEGBASE_FS) with a non-canonical base", R("-22 EINVAL")),
    pv("evtchn-bind-foreign", "EVTCHNOP_bind_interdomain to a port left unbound for another domain", R("-22 EINVAL")),
    pv("evtchn-send-closed", "EVTCHNOP_send on a closed port", R("-22 EINVAL")),
    pv("evtchn-bind-nodomain", "EVTCHNOP_bind_interdomain to a domain that does not exist", R("-3 ESRCH")),
    pv("evtchn-unmask-range", "EVTCHNOP_unmask of port 2^20", R("-22 EINVAL")),
    pv("evtchn-virq-global-vcpu1", "EVTCHNOP_bind_virq of the global VIRQ_DOM_EXC on vCPU 1", R("-22 EINVAL")),
    pv("evtchn-exhaust", "EVTCHNOP_alloc_unbound until refused (the per-domain port limit)", R("-28 ENOSPC")),
    pv("iret-bogus", "HYPERVISOR_iret whose frame lies in an unmapped page", Crash),
    hostile("xs-foreign-nodes", "reads and writes another domU's nodes and dom0's", "xs-foreign=2", &[
        "hostile: xs-foreign: read /local/domain/2/name: Some(EACCES); write: Some(EACCES)",
        "hostile: xs-foreign: read /local/domain/0/name: Some(EACCES); write: Some(EACCES)",
        "hostile: xs-foreign: our own write afterwards: Ok(())",
    ]),
    hostile("xs-malformed", "sends xenstore requests of unknown type, without NUL, with bad characters, in an unknown transaction", "xs-malformed", &[
        "hostile: xs-malformed: unknown type 999: error ENOSYS",
        "hostile: xs-malformed: path without NUL: error EINVAL",
        "hostile: xs-malformed: bad characters: error EINVAL",
        "hostile: xs-malformed: unknown transaction: error ENOENT",
        "hostile: xs-malformed: then a good read: Read reply",
    ]),
    hostile("xs-oversized", "sends a xenstore header announcing 5000 bytes", "xs-oversized", &[
        "xenstore connection closed",
        "hostile: xs-oversized: sent a header announcing 5000 bytes: no answer",
        "hostile: xs-oversized: store error field now 3",
    ]),
    hostile("xs-ring-corrupt", "corrupts its store ring's request index", "xs-ring-corrupt", &[
        "request ring indices are corrupt: xenstore connection closed",
        "hostile: xs-ring-corrupt: req_prod set 5000 ahead; a read then: no answer",
        "hostile: xs-ring-corrupt: store error field now 2",
    ]),
    hostile("gnt-map-foreign", "maps another domU's console grant, which is meant for dom0", "gnt-map-foreign=2", &[
        "hostile: gnt-map-foreign: map d2's console grant: GNTST_general_error (-1)",
    ]),
    hostile("gnt-unmap-twice", "unmaps a grant mapping twice", "gnt-unmap-twice", &[
        "hostile: gnt-unmap-twice: map own grant: okay",
        "hostile: gnt-unmap-twice: first unmap: okay; second: GNTST_bad_handle (-4)",
    ]),
    hostile("gnt-not-owned", "grants a frame it does not own and maps the grant", "gnt-not-owned", &[
        "GNTST_bad_page (-9)",
    ]),
    hostile("gnt-free-mapped", "gives back its console page while dom0 maps it, then scribbles on the ring", "gnt-free-mapped", &[
        "hostile: gnt-free-mapped: decrease_reservation of the console frame: Ok(1)",
        "hostile: gnt-free-mapped: scribbled on the ring",
    ]),
    blk("blk-sector-range", "reads the sector after the disk's last", &[
        "hostile: blk-sector-range: back end Closing, error: request 0x1: OutOfRange { sector: 32768, sectors: 8 }",
        "hostile: blk-sector-range: grants released",
    ]),
    blk("blk-too-many-segments", "sends a read claiming 12 segments (blkif.h allows 11)", &[
        "hostile: blk-too-many-segments: back end Closing, error: request 0x2: SegmentCount(12)",
        "hostile: blk-too-many-segments: grants released",
    ]),
    blk("blk-first-gt-last", "sends a segment whose first sector is after its last", &[
        "hostile: blk-first-gt-last: back end Closing, error: request 0x3: Segment { index: 0, first: 5, last: 2 }",
        "hostile: blk-first-gt-last: grants released",
    ]),
    blk("blk-gref-not-granted", "names a grant it never made", &[
        "hostile: blk-gref-not-granted: back end Closing, error: request 0x4: grant 908 not mappable",
        "hostile: blk-gref-not-granted: grants released",
    ]),
    blk("blk-readonly-grant-read", "asks for a read into a page granted read-only", &[
        "hostile: blk-readonly-grant-read: back end Closing, error: request 0x5: grant 9 not mappable",
        "hostile: blk-readonly-grant-read: grants released",
    ]),
    blk("blk-ring-corrupt", "sets req_prod a thousand requests ahead", &[
        "hostile: blk-ring-corrupt: back end Closing, error: ring: req_prod 1000 is impossible",
        "hostile: blk-ring-corrupt: grants released",
    ]),
    blk("blk-flood", "fills all 32 slots and announces 33 at once", &[
        "hostile: blk-flood: back end Closing, error: ring: req_prod 33 is impossible",
        "hostile: blk-flood: grants released",
    ]),
    blk("blk-indirect-bad", "sends an indirect read whose indirect page holds a segment with first > last", &[
        "hostile: blk-indirect-bad: back end Closing, error: request 0x7: Segment { index: 1, first: 6, last: 1 }",
        "hostile: blk-indirect-bad: grants released",
    ]),
    blk("dev-access", "maps the virtio disk's registers, maps and binds its GSI as a pirq, EOIs it (what only dom0 may do)", &[
        "hostile: dev-access: map the virtio-mmio page of 0xfeb02e00: -1 EPERM",
        "hostile: dev-access: map_pirq GSI 47: -1 EPERM",
        "hostile: dev-access: bind_pirq 47: -1 EPERM",
        "hostile: dev-access: eoi 47: -22 EINVAL",
    ]),
    blk("blk-close-mid-request", "queues a read and goes Closing at once", &[
        "hostile: blk-close-mid-request: back end Closing, error: (none)",
        "hostile: blk-close-mid-request: grants released",
    ]),
    net("net-cross-page", "sends a tx slot whose data crosses its page (offset 4000, 200 bytes)", &[
        "hostile: net-cross-page: back end Closing, error: tx: slot crosses its page: offset 4000, size 200",
        "hostile: net-cross-page: grants released",
    ]),
    net("net-zero-length", "sends a packet of 0 bytes", &[
        "hostile: net-zero-length: answered [-1], then a valid packet answered [0]; back end Some(Connected)",
    ]),
    net("net-oversized", "sends a fragment larger than what is left of its packet", &[
        "hostile: net-oversized: answered [-1, -1], then a valid packet answered [0]; back end Some(Connected)",
    ]),
    net("net-too-many-slots", "sends a packet of 22 slots (netback takes 19, drops up to 21, disconnects beyond)", &[
        "hostile: net-too-many-slots: back end Closing, error: tx: more than 20 fragments",
        "hostile: net-too-many-slots: grants released",
    ]),
    net("net-bad-grant", "names a grant it never made", &[
        "hostile: net-bad-grant: answered [-1], then a valid packet answered [0]; back end Some(Connected)",
    ]),
    net("net-gso-zero", "sends a GSO extra-info of size 0", &[
        "hostile: net-gso-zero: back end Closing, error: tx: GSO size must not be zero",
        "hostile: net-gso-zero: grants released",
    ]),
    net("net-bad-extra", "sends an extra-info of type 7", &[
        "hostile: net-bad-extra: back end Closing, error: tx: invalid extra type 7",
        "hostile: net-bad-extra: grants released",
    ]),
    net("net-ring-corrupt", "sets tx req_prod a thousand requests ahead", &[
        "hostile: net-ring-corrupt: back end Closing, error: tx ring: req_prod 1000 is impossible",
        "hostile: net-ring-corrupt: grants released",
    ]),
    net("net-rx-flood", "posts an rx req_prod a thousand buffers ahead", &[
        "hostile: net-rx-flood: back end Closing, error: rx ring: req_prod 1000 is impossible",
        "hostile: net-rx-flood: grants released",
    ]),
    net("net-spoof", "sends 10 frames from the other vif's MAC and 10 claiming its IP", &[
        "hostile: net-spoof: sent 20 forged frames, answered 20: all taken by netback",
        "vif 0 (00:16:3e:00:00:30): sent 20 packets",
        "bridge: 20 in, 20 filtered, 0 malformed",
    ]),
];

/// The attacks on the hypervisor, with Xen's answer.
fn on_the_hypervisor() -> impl Iterator<Item = (&'static Attack, Answer)> {
    ATTACKS.iter().filter_map(|a| match a.target {
        Target::Hypervisor(answer) => Some((a, answer)),
        Target::Dom0 { .. } | Target::Blkback { .. } | Target::Netback { .. } => None,
    })
}

/// The lines an attack on the hypervisor must print, in order, before the domain ends.
pub fn expected_lines(a: &Attack, answer: Answer) -> Vec<String> {
    match answer {
        Answer::Result(r) => vec![
            format!("attack {}: result {r}", a.name),
            format!("attack {}: legitimate call ok", a.name),
        ],
        Answer::Crash => vec![format!("attack {}: ", a.name)],
    }
}

/// The line `attack all` prints when it is done.
pub const ALL_DONE: &str = "attack: all non-fatal attacks done";

/// `attack-NAME` for each attack on the hypervisor: the shim must answer as Xen does.
pub fn on_the_shim() -> Vec<Scenario> {
    on_the_hypervisor()
        .map(|(a, answer)| {
            Scenario::new(
                format!("attack-{}", a.name),
                format!("hostile guest: {}; answer as Xen's", a.what),
                move |ctx| attack_on_shim(ctx, a, answer),
            )
        })
        .collect()
}

/// `attack-NAME` for each attack on dom0.
pub fn on_dom0() -> Vec<Scenario> {
    ATTACKS
        .iter()
        .filter_map(|a| match a.target {
            Target::Dom0 { cmdline, expect } => Some(Scenario::new(
                format!("attack-{}", a.name),
                format!(
                    "hostile domU: {}; dom0 survives and serves a well-behaved domU to the end",
                    a.what
                ),
                move |ctx| attack_on_dom0(ctx, cmdline, expect),
            )),
            Target::Blkback { expect } => Some(Scenario::new(
                format!("attack-{}", a.name),
                format!(
                    "hostile front end: {}; blkback disconnects its vbd (Closing, error node, grants unmapped) while a kvstore domU's I/O on another vbd completes",
                    a.what
                ),
                move |ctx| attack_on_blkback(ctx, a.name, expect),
            )),
            Target::Netback { expect } => Some(Scenario::new(
                format!("attack-{}", a.name),
                format!(
                    "hostile front end: {}; netback drops that packet or disconnects that vif (Closing, error node, grants released), as Linux's netback decides, while two nettest domUs move 4 MiB through the bridge",
                    a.what
                ),
                move |ctx| attack_on_netback(ctx, a.name, expect),
            )),
            Target::Hypervisor(_) => None,
        })
        .collect()
}

/// The Xen references: every non-fatal attack in one boot, then one scenario per
/// attack that Xen answers by crashing the domain.
pub fn on_xen() -> Vec<Scenario> {
    let mut v = vec![Scenario::new(
        "xen-attack-all",
        "upstream Xen 4.17 answers every non-fatal attack: the reference codes of the attack table",
        xen_attack_all,
    )];
    for (a, answer) in on_the_hypervisor().filter(|(_, answer)| *answer == Crash) {
        v.push(Scenario::new(
            format!("xen-attack-{}", a.name),
            format!("upstream Xen 4.17 crashes the domain for: {}", a.what),
            move |ctx| xen_attack_fatal(ctx, a, answer),
        ));
    }
    v
}

/// examples/attack's `evtchn-exhaust` as a domU of the shim: the per-domain limit holds.
pub fn evtchn_exhaust_domu() -> Scenario {
    Scenario::new(
        "attack-evtchn-exhaust-domu",
        "hostile domU allocates ports until refused: the per-domain limit (1023 ports) holds and it goes on",
        |ctx| {
            bundle_lines(
                ctx,
                &[domu("attack", "evtchn-exhaust")],
                &[
                    "(d1) attack evtchn-exhaust: result -28 ENOSPC",
                    "(d1) attack evtchn-exhaust: 1023 ports allocated before the refusal",
                    "(d1) attack evtchn-exhaust: legitimate call ok",
                    "(shim) d1 (attack) shut down: poweroff",
                ],
                &["FAILED", "crashed", "PANIC"],
                Outcome::PowerOff,
            )
        },
    )
}

fn attack_on_shim(ctx: &Ctx, a: &Attack, answer: Answer) -> Result<Pass, Failure> {
    let mut lines = expected_lines(a, answer);
    let (end, fail_on): (Outcome, &[&str]) = match answer {
        Answer::Result(_) => {
            lines.push(expected::shim::powered_off("attack"));
            (
                Outcome::PowerOff,
                &["legitimate call FAILED", "fatal exception"],
            )
        }
        Answer::Crash => {
            // The shim crashes it: no shutdown of its own.
            lines.push("(shim) d0 (attack) crashed".into());
            (Outcome::Crash, &["still alive", "fatal exception"])
        }
    };
    lines.push(expected::shim::NO_DOMAINS_LEFT.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Guest {
                on: Hypervisor::Shim,
                guest: "attack",
                guest_cmdline: a.name,
            },
            expect: &expect,
            fail_on,
            end: End::Outcome(end),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn xen_attack_all(ctx: &Ctx) -> Result<Pass, Failure> {
    let mut lines: Vec<String> = on_the_hypervisor()
        .filter(|(_, answer)| *answer != Crash)
        .flat_map(|(a, answer)| expected_lines(a, answer))
        .collect();
    lines.push(ALL_DONE.into());
    lines.push(expected::xen::DOM0_HALTED.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Guest {
                on: Hypervisor::Xen,
                guest: "attack",
                guest_cmdline: "all",
            },
            expect: &expect,
            fail_on: &[
                "legitimate call FAILED",
                "fatal exception",
                expected::xen::PANIC,
                expected::xen::DOM0_CRASHED,
            ],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn xen_attack_fatal(ctx: &Ctx, a: &Attack, answer: Answer) -> Result<Pass, Failure> {
    let mut lines = expected_lines(a, answer);
    lines.push(expected::xen::DOM0_CRASHED.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Guest {
                on: Hypervisor::Xen,
                guest: "attack",
                guest_cmdline: a.name,
            },
            expect: &expect,
            fail_on: &["still alive", "fatal exception", expected::xen::PANIC],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// examples/hostile as d1 beside dom0 and a well-behaved xsdemo as d2.
fn attack_on_dom0(ctx: &Ctx, cmdline: &str, expect: &[&str]) -> Result<Pass, Failure> {
    let anywhere = [expect, dom0_lines::SURVIVED_AN_ATTACK].concat();
    let domains = [
        super::dom0::dom0("poweroff-on=data/done"),
        BundleGuest {
            cmdline,
            ..domu("hostile", "")
        },
        domu("xsdemo", "peer=1"),
    ];
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &domains },
            expect: &[dom0_lines::UP],
            fail_on: dom0_lines::FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &anywhere,
        },
    )
}

fn attack_on_blkback(ctx: &Ctx, name: &str, expect: &[&str]) -> Result<Pass, Failure> {
    let dir = super::harness::scenario_disks(ctx);
    for img in ["attack-hostile.img", "attack-kvstore.img"] {
        let _ = std::fs::remove_file(dir.join(img));
    }
    let anywhere = [
        expect,
        &[
            "hostile: done",
            "kvstore| kvstore: verify: 500 intact, 0 wrong, first missing none",
        ],
    ]
    .concat();
    let domains = [
        super::dom0::dom0(""),
        BundleGuest {
            disks: &["vdev=xvda,access=rw,size=16M,target=attack-hostile.img"],
            ..domu("hostile", name)
        },
        BundleGuest {
            memory_mib: 32,
            disks: &["vdev=xvda,access=rw,size=16M,target=attack-kvstore.img"],
            ..domu("kvstore", "fill=500 verify=500 exit")
        },
    ];
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &domains },
            expect: &[dom0_lines::UP],
            fail_on: dom0_lines::FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &anywhere,
        },
    )
}

fn attack_on_netback(ctx: &Ctx, name: &str, expect: &[&str]) -> Result<Pass, Failure> {
    const BYTES: u64 = 4 << 20;
    let tx = format!("connect=10.0.2.20:5001 send={BYTES} retry");
    let m = super::net::net_manifest(&[
        ("rx", "listen=5001", "mac=00:16:3e:00:00:20,ip=10.0.2.20"),
        ("tx", &tx, "ip=10.0.2.21"),
        ("hostile", name, "mac=00:16:3e:00:00:30,ip=10.0.2.30"),
    ])?;
    let mut seen = vec![false; expect.len()];
    let (mut got, mut sent, mut done) = (None, None, false);
    super::net::run_net(ctx, &m, Duration::from_secs(180), |line| {
        for (s, e) in seen.iter_mut().zip(expect) {
            *s |= line.contains(e);
        }
        done |= line.contains("hostile: done");
        if line.contains(&format!("nettest: received {BYTES} bytes")) {
            got = super::net::crc_of(line);
        }
        if line.contains(&format!("nettest: sent {BYTES} bytes")) && line.contains("peer said: ok")
        {
            sent = super::net::crc_of(line);
        }
        let transfer = got.is_some() && got == sent;
        (transfer && done && seen.iter().all(|&s| s)).then_some(Ok(()))
    })
    .map_err(|mut f| {
        let missing: Vec<&str> = expect
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|(e, _)| *e)
            .collect();
        f.reason = format!(
            "{}; transfer {got:?}/{sent:?}, hostile done {done}, not seen: {missing:?}",
            f.reason
        );
        f
    })?;
    Ok(Pass {
        first_guest_line: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_enough() {
        let mut names: Vec<_> = ATTACKS.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ATTACKS.len());
        assert!(on_the_hypervisor().count() >= 22);
        assert!(ATTACKS.len() > on_the_hypervisor().count());
        // Not the name of a scenario outside the table either.
        assert!(!names.contains(&"evtchn-exhaust-domu"));
    }

    /// Both kinds of attack become shim scenarios, those on the hypervisor Xen ones too.
    #[test]
    fn the_table_drives_the_shim_and_the_xen_reference() {
        let shim: Vec<_> = on_the_shim()
            .into_iter()
            .chain(on_dom0())
            .map(|s| s.name)
            .collect();
        let want: Vec<_> = ATTACKS
            .iter()
            .map(|a| format!("attack-{}", a.name))
            .collect();
        assert_eq!(shim, want);
        let xen: Vec<_> = on_xen().into_iter().map(|s| s.name).collect();
        assert_eq!(xen, ["xen-attack-all", "xen-attack-iret-bogus"]);
        for a in ATTACKS {
            if let Target::Dom0 { expect, cmdline } = a.target {
                assert!(!expect.is_empty() && !cmdline.is_empty(), "{}", a.name);
            }
        }
    }

    #[test]
    fn the_guest_knows_every_attack_in_the_same_order() {
        let src = std::fs::read_to_string(
            crate::bindgen::workspace_root().join("examples/attack/src/main.rs"),
        )
        .unwrap();
        let mut at = 0;
        for (a, _) in on_the_hypervisor() {
            let needle = format!("name: \"{}\",", a.name);
            let found = src[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{} missing or out of order in the guest", a.name));
            at += found + needle.len();
        }
    }

    /// examples/hostile handles each dom0 attack's command line (its mode, before `=`).
    #[test]
    fn the_hostile_guest_knows_every_attack_on_dom0() {
        let src = std::fs::read_to_string(
            crate::bindgen::workspace_root().join("examples/hostile/src/main.rs"),
        )
        .unwrap();
        for a in ATTACKS {
            if let Target::Dom0 { cmdline, .. } = a.target {
                let mode = cmdline.split('=').next().unwrap();
                assert!(src.contains(&format!("\"{mode}\"")), "{}: {mode}", a.name);
            }
        }
    }
}
