//! Scenarios of dom0 as the control domain (issue 5): examples/dom0 runs xenstored and
//! the console back-end, domUs write on their console rings and use xenstore. Hostile
//! domUs attacking it are in the attack table (`attacks.rs`), GRUB as a domU on its
//! console with the other third-party kernels (`third_party.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::expected::dom0::{self as lines, FAIL, UP};
use super::harness::{
    check, check_typing, domu, machine, Boot, BundleGuest, Check, Ctx, End, Failure, Pass,
    Scenario, TAIL,
};
use crate::bundle::Role;
use crate::qemu::{self, Control, Outcome};

/// examples/dom0 with `cmdline`, serving the bundle's domUs.
pub fn dom0(cmdline: &'static str) -> BundleGuest<'static> {
    BundleGuest {
        example: "dom0",
        role: Role::Dom0,
        memory_mib: 32,
        cmdline,
        backends: true,
        disks: &[],
    }
}

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario::new("dom0-hello", "bundles/hello.toml: dom0 introduces the hello domU, whose greeting comes through its console ring as `hello| ...`; dom0 releases it and powers off", dom0_hello),
        Scenario::new("dom0-consoles", "dom0 + two domUs each printing 300 lines of 100 bytes (about 15 console rings each) as fast as they can: every line of both arrives, complete and in order", dom0_consoles),
        Scenario::new("dom0-xenstore", "two domUs use xenstore (own nodes, a watch, 20 transactions each, a conflicting commit refused with EAGAIN, other domains' nodes refused); dom0 then asks each to power off through control/shutdown and libos obeys", dom0_xenstore),
        Scenario::new("dom0-pingpong", "pingpong's two domUs built by dom0's toolstack (ports 1 and 2 are their xenstore and console channels, as under xl): ping publishes its port in xenstore, readable by pong alone, and pong finds it there; 2,000 rounds, no lost or duplicated event", dom0_pingpong),
        Scenario::new("dom0-shutdown-busy", "dom0 asks a domU that never runs libos's executor (spinner, a busy loop) to power off through control/shutdown, as `xl shutdown` does: libos obeys from the store's event handler, and the domain powers off", dom0_shutdown_busy),
        Scenario::new("dom0-balloon", "dom0 sets a domU's memory/target to half its size, then back, as `xl mem-set` does: libos's balloon gives 2,048 frames back to the hypervisor (XENMEM_decrease_reservation) and takes them back (populate_physmap), the hypervisor's count following; the domU (spinner, a busy loop) obeys from the store's event handler", dom0_balloon),
        Scenario::new("dom0-console-input", "serial input reaches the focused domU's console ring; Ctrl-A three times moves the focus to the next domU", dom0_console_input),
    ]
}

fn dom0_hello(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Manifest {
                path: "bundles/hello.toml",
            },
            expect: lines::HELLO,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: Some(lines::HELLO_FIRST_LINE),
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
    let cmd = machine(ctx, &Boot::Bundle { domains: &domains })?.command();
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
            expect: &[UP],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: lines::XENSTORE,
        },
    )
}

fn dom0_pingpong(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[
                    dom0(""),
                    domu("pingpong", "ping peer=2 rounds=2000"),
                    domu("pingpong", "pong peer=1 rounds=2000"),
                ],
            },
            expect: lines::PINGPONG,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: lines::PINGPONG_ANYWHERE,
        },
    )
}

fn dom0_shutdown_busy(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[dom0("poweroff-after=1"), domu("spinner", "every=5000000")],
            },
            expect: lines::SHUTDOWN_BUSY,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn dom0_balloon(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[
                    dom0("mem-set=1:8192:1,1:16384:2 poweroff-after=3"),
                    domu("spinner", "every=5000000"),
                ],
            },
            expect: lines::BALLOON,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
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
            expect: lines::CONSOLE_INPUT,
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
