//! The QEMU scenarios of `cargo xtask test`: boot images, read the serial log, check
//! that given lines appear in order and that the run ends the expected way. This is
//! where behaviour that host tests cannot reach (boot, paging, traps, real Xen) is
//! tested. A scenario is a name, a one-line description and a function; most are one
//! call to [`check`]. The strings they wait for are the constants below, so they are
//! easy to adjust when the shim's or the guests' messages change.

use std::path::PathBuf;
use std::time::Duration;

use crate::images::Images;
use crate::qemu::{self, Accel, Control, Outcome};
use crate::xen;

/// The greeting of `examples/hello`.
pub const HELLO_GREETING: &str = "Hello from";
/// The shim's report that hello, as domain 0, powered off.
pub const SHIM_HELLO_POWERED_OFF: &str = "(shim) d0 (hello) shut down: poweroff";
/// The shim's crash report for `examples/crash` (a write through a null pointer):
/// these lines, in this order.
pub const SHIM_CRASH_REPORT: &[&str] = &[
    "(shim) d0 (crash) crashed: #PF page fault (vector 14) error code 0x6 at rip=0xffffffff8",
    "cr2=0x0000000000000010",
    "rax=",
];
/// The shim, still running after the crash, once no domain is left.
pub const SHIM_NO_DOMAINS_LEFT: &str = "(shim) no domains left";
/// Xen 4.17 when dom0 powers off (`hwdom_shutdown`, SHUTDOWN_poweroff). Xen then halts
/// the machine but QEMU keeps running, so the scenario stops QEMU itself.
pub const XEN_DOM0_HALTED: &str = "Hardware Dom0 halted";
/// Xen 4.17 lines that mean the run failed: no point waiting for the timeout.
pub const XEN_FAILURES: &[&str] = &["Panic on CPU", "Hardware Dom0 crashed"];

/// Lines kept in a failure report.
const TAIL: usize = 30;

/// What scenarios run with.
pub struct Ctx<'a> {
    pub images: &'a Images,
    pub target_dir: PathBuf,
    pub accel: Accel,
    pub verbose: bool,
}

/// One scenario.
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub run: fn(&Ctx) -> Result<Pass, Failure>,
}

/// A passed scenario, with what it measured (reported, never asserted).
pub struct Pass {
    /// Wall time from QEMU start to the guest's first line, when the scenario knows
    /// which line that is.
    pub first_guest_line: Option<Duration>,
}

/// A failed scenario: why, and the end of the serial log.
pub struct Failure {
    pub reason: String,
    pub log: Vec<String>,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            reason: format!("{e:#}"),
            log: Vec::new(),
        }
    }
}

/// Every scenario, in the order `cargo xtask test` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hello",
        description: "shim boots examples/hello as dom0: greeting printed, powers off (exit 0)",
        run: hello,
    },
    Scenario {
        name: "crash",
        description: "a guest faults: shim reports a crash with rip/cr2 and keeps running",
        run: crash,
    },
    Scenario {
        name: "crash-gp",
        description: "a guest runs a privileged instruction (hlt): #GP reported, guest crashed",
        run: crash_gp,
    },
    Scenario {
        name: "crash-panic",
        description: "a guest panics: libos logs it and shuts down with SHUTDOWN_crash",
        run: crash_panic,
    },
    Scenario {
        name: "third-party-grub",
        description: "GRUB's PV image (Debian) boots via --kernel style: notes read, runs until it needs the PV MMU, contained",
        run: third_party_grub,
    },
    Scenario {
        name: "xen-hello",
        description: "upstream Xen 4.17 boots examples/hello as dom0: greeting printed",
        run: xen_hello,
    },
];

/// `cargo xtask test --list`.
pub fn list() {
    for s in SCENARIOS {
        println!("{:<12} {}", s.name, s.description);
    }
}

fn hello(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest: "hello",
                guest_cmdline: "",
            },
            expect: &[
                HELLO_GREETING,
                "start_info: xen-3.0-x86_64, 16384 pages (64 MiB)",
                "flags: 0x3 (privileged: true, initial domain: true)",
                "heap works: sum of 1..=10 from a Vec is 55",
                SHIM_HELLO_POWERED_OFF,
            ],
            fail_on: &[],
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: Some(HELLO_GREETING),
        },
    )
}

fn crash(ctx: &Ctx) -> Result<Pass, Failure> {
    let expect: Vec<&str> = SHIM_CRASH_REPORT
        .iter()
        .copied()
        .chain([SHIM_NO_DOMAINS_LEFT])
        .collect();
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest: "crash",
                guest_cmdline: "",
            },
            expect: &expect,
            fail_on: &[],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
        },
    )
}

fn crash_gp(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest: "crash",
                guest_cmdline: "gp",
            },
            expect: &[
                "crash: about to fault with 'gp'",
                "(shim) d0 (crash) crashed: #GP general protection (vector 13)",
                SHIM_NO_DOMAINS_LEFT,
            ],
            fail_on: &["still alive"],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
        },
    )
}

fn crash_panic(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest: "crash",
                guest_cmdline: "panic",
            },
            expect: &[
                "panic: panicked at",
                "(shim) d0 (crash) shut down: crash",
                SHIM_NO_DOMAINS_LEFT,
            ],
            fail_on: &[],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
        },
    )
}

/// GRUB needs grant tables and the PV MMU (later issues): this checks that the shim
/// loads a kernel built by others from its notes, runs it, answers what it does not
/// implement with -ENOSYS, and contains the fault GRUB then takes.
fn third_party_grub(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::ShimGrub,
            expect: &[
                "(shim) d0: GRUB (xen-3.0)",
                "not implemented: -ENOSYS",
                "(shim) d0 (GRUB) crashed",
                SHIM_NO_DOMAINS_LEFT,
            ],
            fail_on: &["PANIC", "fault in the shim"],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
        },
    )
}

fn xen_hello(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Xen { guest: "hello" },
            expect: &[HELLO_GREETING, XEN_DOM0_HALTED],
            fail_on: XEN_FAILURES,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(180),
            first_guest_line: Some(HELLO_GREETING),
        },
    )
}

/// What to boot.
pub enum Boot<'a> {
    /// The shim, with the example `guest` as its only, privileged domain.
    Shim {
        guest: &'a str,
        guest_cmdline: &'a str,
    },
    /// Upstream Xen 4.17 with the example `guest` as dom0.
    Xen { guest: &'a str },
    /// The shim with GRUB's Xen PV image (built by others) as its only domain.
    ShimGrub,
}

/// How the run must end.
pub enum End {
    /// QEMU exits by itself with this outcome.
    Outcome(Outcome),
    /// QEMU is stopped once every expected line has been seen (for hypervisors that do
    /// not end QEMU, like Xen).
    StopWhenSeen,
}

/// A boot and what it must show.
pub struct Check<'a> {
    pub boot: Boot<'a>,
    /// Substrings that must appear, each on a line after the previous one's.
    pub expect: &'a [&'a str],
    /// Substrings that fail the scenario at once.
    pub fail_on: &'a [&'a str],
    pub end: End,
    pub timeout: Duration,
    /// The line whose arrival time is reported as "first guest line".
    pub first_guest_line: Option<&'a str>,
}

/// Boots, waits for the expected lines in order, checks how the run ended.
pub fn check(ctx: &Ctx, c: Check) -> Result<Pass, Failure> {
    let cmd = match c.boot {
        Boot::Shim {
            guest,
            guest_cmdline,
        } => qemu::shim_command(
            &ctx.images.shim,
            &ctx.images.guest(guest)?,
            &qemu::shim_cmdline("", guest_cmdline),
            ctx.accel,
            "256M",
        ),
        Boot::ShimGrub => qemu::shim_command(
            &ctx.images.shim,
            &crate::grub::ensure(&ctx.target_dir)?,
            &qemu::shim_cmdline("", ""),
            ctx.accel,
            "256M",
        ),
        Boot::Xen { guest } => qemu::xen_command(
            &xen::ensure(&ctx.target_dir)?,
            &ctx.images.guest(guest)?,
            ctx.accel,
        ),
    };
    let stop_when_seen = matches!(c.end, End::StopWhenSeen);

    let mut seen = 0;
    let mut fatal: Option<String> = None;
    let captured = qemu::run_captured(cmd, c.timeout, ctx.verbose, |line| {
        if seen < c.expect.len() && line.contains(c.expect[seen]) {
            seen += 1;
        }
        if let Some(f) = c.fail_on.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        if stop_when_seen && seen == c.expect.len() {
            return Control::Stop;
        }
        Control::Continue
    })?;

    let mut reasons = Vec::new();
    if let Some(f) = fatal {
        reasons.push(f);
    }
    if captured.timed_out {
        reasons.push(format!("timed out after {} s", c.timeout.as_secs()));
    }
    if let Some(missing) = c.expect.get(seen) {
        reasons.push(format!(
            "no line containing {missing:?} (lines are expected in order)"
        ));
    }
    if let (End::Outcome(want), Some(status)) = (&c.end, captured.status) {
        let got = qemu::outcome(status);
        if got != *want {
            reasons.push(format!("expected: {want}; got: {got}"));
        }
    }
    if reasons.is_empty() {
        Ok(Pass {
            first_guest_line: c.first_guest_line.and_then(|p| captured.time_to_line(p)),
        })
    } else {
        Err(Failure {
            reason: reasons.join("; "),
            log: captured.tail(TAIL).map(str::to_owned).collect(),
        })
    }
}
