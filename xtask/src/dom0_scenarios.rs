//! Scenarios of dom0 as the control domain (issue 5): examples/dom0 runs xenstored and
//! the console back-end, domUs write on their console rings and use xenstore, hostile
//! domUs attack the store and the grant tables, and a third-party PV guest (GRUB) runs
//! as a domU on the split console.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bundle::Role;
use crate::qemu::{self, Control, Outcome};
use crate::scenarios::{
    bundle_manifest, check, check_typing, domu, scenario_bundle, Boot, BundleGuest, Check, Ctx,
    End, Failure, Pass, Scenario, TAIL,
};

/// Lines that fail any dom0 scenario at once.
const FAIL: &[&str] = &[
    "FAILED",
    "PANIC",
    "fault in the shim",
    "(shim) d0 (dom0) crashed",
];
/// dom0's line once it is serving.
pub const DOM0_UP: &str = "dom0: xenstored and the console back-end are up";
/// dom0's last line, before the machine ends.
pub const DOM0_DONE: &str = "dom0: no domU left: powering off";

fn dom0(cmdline: &'static str) -> BundleGuest<'static> {
    BundleGuest {
        example: "dom0",
        role: Role::Dom0,
        memory_mib: 32,
        cmdline,
        backends: true,
    }
}

pub fn all() -> Vec<Scenario> {
    let mut v = vec![
        Scenario::new("dom0-hello", "the default appliance (bundles/default.toml): dom0 introduces the hello domU, whose greeting comes through its console ring as `hello| ...`; dom0 releases it and powers off", dom0_hello),
        Scenario::new("dom0-consoles", "dom0 + two domUs each printing 300 lines of 100 bytes (about 15 console rings each) as fast as they can: every line of both arrives, complete and in order", dom0_consoles),
        Scenario::new("dom0-xenstore", "two domUs use xenstore (own nodes, a watch, 20 transactions each, a conflicting commit refused with EAGAIN, other domains' nodes refused); dom0 then asks each to power off through control/shutdown and libos obeys", dom0_xenstore),
        Scenario::new("dom0-console-input", "serial input reaches the focused domU's console ring; Ctrl-A three times moves the focus to the next domU", dom0_console_input),
        Scenario::new("third-party-grub-domu", "GRUB's PV image (Debian) as a domU: it reads xenstore and writes its console ring, which dom0 prints; a command typed on the serial line reaches it", grub_domu),
    ];
    for a in ATTACKS {
        v.push(Scenario::new(
            format!("attack-{}", a.name),
            format!(
                "hostile domU: {}; dom0 survives and serves a well-behaved domU to the end",
                a.what
            ),
            move |ctx| attack(ctx, a),
        ));
    }
    v
}

fn dom0_hello(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Manifest {
                path: "bundles/default.toml",
            },
            expect: &[
                DOM0_UP,
                "dom0: d1 (hello) introduced, console connected, unpaused",
                "hello| Hello from hello, a Xen PV guest on libos!",
                "hello|   flags: 0x0 (privileged: false, initial domain: false)",
                "dom0: d1 (hello) is gone: released",
                DOM0_DONE,
            ],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: Some("hello| Hello from hello"),
            anywhere: &[],
        },
    )
}

const FLOOD_LINES: usize = 300;

/// Every `flood` line of both domains, in order, none missing, none garbled.
fn dom0_consoles(ctx: &Ctx) -> Result<Pass, Failure> {
    let domains = [
        dom0(""),
        domu("xsdemo", "flood=300"),
        domu("xsdemo", "flood=300"),
    ];
    let (module, memory) = scenario_bundle(ctx, &bundle_manifest(&domains)?)?;
    let cmd = qemu::shim_command(&ctx.images.shim, &module, "", ctx.accel, &memory);
    let filler = ".".repeat(86);
    let mut next: BTreeMap<&str, usize> = [("xsdemo", 0), ("xsdemo-1", 0)].into();
    let mut errors: Vec<String> = Vec::new();
    let captured = qemu::run_captured(cmd, Duration::from_secs(180), ctx.verbose, |line| {
        if FAIL.iter().any(|f| line.contains(f)) {
            errors.push(format!("saw {line:?}"));
            return Control::Stop;
        }
        let Some((name, text)) = line.split_once("| ") else {
            return Control::Continue;
        };
        let Some(n) = next.get_mut(name) else {
            return Control::Continue;
        };
        if let Some(rest) = text.strip_prefix("flood ") {
            let want = format!("{:06} {filler}", *n);
            if rest != want {
                errors.push(format!("{name}: line {} is {text:?}", *n));
                return Control::Stop;
            }
            *n += 1;
        }
        Control::Continue
    })?;
    for (name, n) in &next {
        if *n != FLOOD_LINES {
            errors.push(format!("{name}: {n} of {FLOOD_LINES} lines arrived"));
        }
    }
    for name in ["xsdemo", "xsdemo-1"] {
        let done = format!("{name}| xsdemo: flood of {FLOOD_LINES} lines done");
        if !captured.lines.iter().any(|l| l.text.contains(&done)) {
            errors.push(format!("no line {done:?}"));
        }
    }
    if captured.timed_out {
        errors.push("timed out".into());
    }
    match captured.status.map(qemu::outcome) {
        Some(Outcome::PowerOff) => {}
        other => errors.push(format!("expected power-off, got {other:?}")),
    }
    if errors.is_empty() {
        Ok(Pass {
            first_guest_line: None,
        })
    } else {
        Err(Failure {
            reason: errors.join("; "),
            log: captured.tail(TAIL).map(str::to_owned).collect(),
        })
    }
}

fn dom0_xenstore(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[
                    dom0("poweroff-on=data/done"),
                    domu("xsdemo", "peer=2"),
                    domu("xsdemo", "peer=1"),
                ],
            },
            expect: &[DOM0_UP],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[
                "xsdemo| xsdemo: I am domain 1 (xsdemo), home /local/domain/1",
                "xsdemo-1| xsdemo: I am domain 2 (xsdemo-1), home /local/domain/2",
                "xsdemo| xsdemo: 20 transactions committed",
                "xsdemo-1| xsdemo: 20 transactions committed",
                "xsdemo| xsdemo: a conflicting transaction was refused with EAGAIN and wrote nothing",
                "xsdemo| xsdemo: refused: /local/domain/0: read EACCES, write EACCES; /tool: read EACCES, write EACCES; /local/domain/2/name: read EACCES",
                "xsdemo| xsdemo: OK",
                "xsdemo-1| xsdemo: OK",
                "dom0: asking d1 (xsdemo) to power off",
                "dom0: asking d2 (xsdemo-1) to power off",
                "xsdemo| control: poweroff requested by the toolstack",
                "xsdemo-1| control: poweroff requested by the toolstack",
                "(shim) d1 (xsdemo) shut down: poweroff",
                "(shim) d2 (xsdemo-1) shut down: poweroff",
                "dom0: d1 (xsdemo) is gone: released",
                DOM0_DONE,
            ],
        },
    )
}

fn dom0_console_input(ctx: &Ctx) -> Result<Pass, Failure> {
    check_typing(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[dom0(""), domu("xsdemo", "echo"), domu("xsdemo", "echo")],
            },
            expect: &[
                "xsdemo| xsdemo: got \"hello one\"",
                "[console input now goes to d2",
                "xsdemo-1| xsdemo: got \"quit\"",
                "xsdemo| xsdemo: got \"quit\"",
                DOM0_DONE,
            ],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
        &[
            ("xsdemo-1| xsdemo: echo: type a line", b"hello one\r"),
            ("xsdemo| xsdemo: got \"hello one\"", b"\x01\x01\x01quit\r"),
            ("dom0: d2 (xsdemo-1) is gone", b"\x01\x01\x01quit\r"),
        ],
    )
}

fn grub_domu(ctx: &Ctx) -> Result<Pass, Failure> {
    let grub = crate::grub::ensure(&ctx.target_dir)?;
    let grub: &'static str = Box::leak(grub.to_string_lossy().into_owned().into_boxed_str());
    check_typing(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[
                    dom0(""),
                    BundleGuest {
                        example: grub,
                        role: Role::DomU,
                        memory_mib: 32,
                        cmdline: "",
                        backends: false,
                    },
                ],
            },
            expect: &[
                DOM0_UP,
                "dom0: d1 (grub-x86_64-xen) introduced, console connected, unpaused",
                "grub-x86_64-xen| .[30m.[47mWelcome to GRUB!",
                "GNU GRUB  version 2.06",
                "grub-x86_64-xen| grub> ",
                "grub-x86_64-xen| typed-into-grub",
            ],
            fail_on: FAIL,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
        &[("device or file completions.", b"echo typed-into-grub\r")],
    )
}

/// A hostile domU's attack: its command line, and what must be seen.
pub struct Attack {
    pub name: &'static str,
    pub what: &'static str,
    pub cmdline: &'static str,
    pub expect: &'static [&'static str],
}

pub const ATTACKS: &[Attack] = &[
    Attack {
        name: "xs-foreign-nodes",
        what: "reads and writes another domU's nodes and dom0's",
        cmdline: "xs-foreign=2",
        expect: &[
            "hostile: xs-foreign: read /local/domain/2/name: Some(EACCES); write: Some(EACCES)",
            "hostile: xs-foreign: read /local/domain/0/name: Some(EACCES); write: Some(EACCES)",
            "hostile: xs-foreign: our own write afterwards: Ok(())",
        ],
    },
    Attack {
        name: "xs-malformed",
        what: "sends xenstore requests of unknown type, without NUL, with bad characters, in an unknown transaction",
        cmdline: "xs-malformed",
        expect: &[
            "hostile: xs-malformed: unknown type 999: error ENOSYS",
            "hostile: xs-malformed: path without NUL: error EINVAL",
            "hostile: xs-malformed: bad characters: error EINVAL",
            "hostile: xs-malformed: unknown transaction: error ENOENT",
            "hostile: xs-malformed: then a good read: Read reply",
        ],
    },
    Attack {
        name: "xs-oversized",
        what: "sends a xenstore header announcing 5000 bytes",
        cmdline: "xs-oversized",
        expect: &[
            "xenstore connection closed",
            "hostile: xs-oversized: sent a header announcing 5000 bytes: no answer",
            "hostile: xs-oversized: store error field now 3",
        ],
    },
    Attack {
        name: "xs-ring-corrupt",
        what: "corrupts its store ring's request index",
        cmdline: "xs-ring-corrupt",
        expect: &[
            "request ring indices are corrupt: xenstore connection closed",
            "hostile: xs-ring-corrupt: req_prod set 5000 ahead; a read then: no answer",
            "hostile: xs-ring-corrupt: store error field now 2",
        ],
    },
    Attack {
        name: "gnt-map-foreign",
        what: "maps another domU's console grant, which is meant for dom0",
        cmdline: "gnt-map-foreign=2",
        expect: &["hostile: gnt-map-foreign: map d2's console grant: GNTST_general_error (-1)"],
    },
    Attack {
        name: "gnt-unmap-twice",
        what: "unmaps a grant mapping twice",
        cmdline: "gnt-unmap-twice",
        expect: &[
            "hostile: gnt-unmap-twice: map own grant: okay",
            "hostile: gnt-unmap-twice: first unmap: okay; second: GNTST_bad_handle (-4)",
        ],
    },
    Attack {
        name: "gnt-not-owned",
        what: "grants a frame it does not own and maps the grant",
        cmdline: "gnt-not-owned",
        expect: &["GNTST_bad_page (-9)"],
    },
    Attack {
        name: "gnt-free-mapped",
        what: "gives back its console page while dom0 maps it, then scribbles on the ring",
        cmdline: "gnt-free-mapped",
        expect: &[
            "hostile: gnt-free-mapped: decrease_reservation of the console frame: Ok(1)",
            "hostile: gnt-free-mapped: scribbled on the ring",
        ],
    },
];

fn attack(ctx: &Ctx, a: &Attack) -> Result<Pass, Failure> {
    let mut anywhere: Vec<&str> = a.expect.to_vec();
    anywhere.extend([
        "xsdemo| xsdemo: OK",
        "dom0: d2 (xsdemo) is gone: released",
        "(shim) d1 (hostile) shut down",
    ]);
    let domains = [
        dom0("poweroff-on=data/done"),
        BundleGuest {
            cmdline: a.cmdline,
            ..domu("hostile", "")
        },
        domu("xsdemo", "peer=1"),
    ];
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &domains },
            expect: &[DOM0_UP],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &anywhere,
        },
    )
}
