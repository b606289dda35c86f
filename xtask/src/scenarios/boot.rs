//! Scenarios of the shim alone (no Xen reference): guests that crash in ways of their
//! own, domain bundles, domains side by side, the toolstack hypercalls.

use std::time::Duration;

use super::expected::{self, crash, ctl, hello, pingpong, spinner};
use super::harness::{
    bundle_lines, check, domu, Boot, BundleGuest, Check, Ctx, End, Failure, Hypervisor, Pass,
    Scenario,
};
use crate::bundle::Role;
use crate::qemu::Outcome;

/// The crashes beside the page fault of the `crash` pair.
pub fn crashes() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "crash-gp",
            "a guest runs a privileged instruction (hlt): #GP reported, guest crashed",
            crash_gp,
        ),
        Scenario::new(
            "crash-panic",
            "a guest panics: libos logs it and shuts down with SHUTDOWN_crash",
            crash_panic,
        ),
    ]
}

pub fn hello3() -> Scenario {
    Scenario::new("hello3", "three domains from one bundle (dom0 + two domUs) each greet and power off; the machine ends when the last one does", hello3_run)
}

/// Bundles of domUs side by side, and dom0 controlling a domU.
pub fn side_by_side() -> Vec<Scenario> {
    vec![
        Scenario::new("pingpong", "two domUs ping-pong 10,000 times over an interdomain channel: no lost or duplicated event", pingpong_run),
        Scenario::new("spin", "a domU that never blocks beside a domU that must finish its timers: the timers fire in order, never early, and the worker powers off while the spinner still spins", spin),
        Scenario::new("balloon-give-back", "an appliance gives back at start what it will not use (spinner give-back=1024: all but 1 MiB of its free heap, libos's balloon); the hypervisor's count of its pages matches what the balloon kept", balloon_give_back),
        Scenario::new("pingpong-crash", "a domU crashes mid-run; its peer keeps going, sees the port closed and powers off", pingpong_crash),
    ]
}

pub fn dom0_ctl() -> Scenario {
    Scenario::new("dom0-ctl", "dom0 (examples/ctl) lists domains, pauses a spinning domU (its cpu time stops), unpauses it (it runs again), destroys it (gone from the list); the domU's own domctl/sysctl calls get -EPERM", dom0_ctl_run)
}

/// examples/crash with `how`, crashing with `lines`, then the shim's report.
fn crash_with(ctx: &Ctx, how: &str, lines: &[&str], fail_on: &[&str]) -> Result<Pass, Failure> {
    let mut expect: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    expect.push(expected::shim::crash_shutdown("crash"));
    expect.push(expected::shim::NO_DOMAINS_LEFT.into());
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Guest {
                on: Hypervisor::Shim,
                guest: "crash",
                guest_cmdline: how,
            },
            expect: &expect,
            fail_on,
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn crash_gp(ctx: &Ctx) -> Result<Pass, Failure> {
    crash_with(ctx, "gp", crash::GP, &[crash::STILL_ALIVE])
}

fn crash_panic(ctx: &Ctx) -> Result<Pass, Failure> {
    crash_with(ctx, "panic", crash::PANIC, &[])
}

fn hello3_run(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Manifest {
                path: "bundles/hello3.toml",
            },
            expect: &[],
            fail_on: &["crashed", "PANIC"],
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: hello::HELLO3,
        },
    )
}

fn pingpong_run(ctx: &Ctx) -> Result<Pass, Failure> {
    bundle_lines(
        ctx,
        &[
            domu("pingpong", "ping peer=2 rounds=10000"),
            domu("pingpong", "pong peer=1 rounds=10000"),
        ],
        pingpong::TWO_DOMAINS,
        &["FAILED", "crashed", "PANIC"],
        Outcome::PowerOff,
    )
}

fn balloon_give_back(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[domu("spinner", "give-back=1024 every=5000000")],
            },
            expect: &["(d1) spinner: gave back ", "(d1) spinner: heartbeat 1"],
            fail_on: &["FAILED", "crashed", "PANIC"],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn spin(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[domu("spinner", "every=2000000"), domu("timers", "")],
            },
            expect: spinner::AFTER_THE_WORKER,
            fail_on: &["FAILED", "crashed", "PANIC"],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: spinner::ANYWHERE,
        },
    )
}

fn pingpong_crash(ctx: &Ctx) -> Result<Pass, Failure> {
    bundle_lines(
        ctx,
        &[
            domu("pingpong", "ping peer=2 rounds=10000"),
            domu("pingpong", "pong peer=1 crash-after=500"),
        ],
        pingpong::PEER_CRASHES,
        &["FAILED", "d1 (pingpong) crashed", "PANIC"],
        Outcome::PowerOff,
    )
}

/// The toolstack hypercalls: dom0 controls a CPU-bound domU, which first tries the
/// same calls itself and must be refused.
fn dom0_ctl_run(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[
                    BundleGuest {
                        example: "ctl",
                        role: Role::Dom0,
                        memory_mib: 64,
                        cmdline: "",
                        backends: false,
                        disks: &[],
                    },
                    domu("spinner", "probe"),
                ],
            },
            expect: ctl::WITH_A_DOMU,
            fail_on: ctl::WITH_A_DOMU_FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[ctl::DOMU_PROBE],
        },
    )
}
