//! The QEMU scenarios of `cargo xtask test`: boot images, read the serial log, check
//! that given lines appear in order and that the run ends the expected way. This is
//! where behaviour that host tests cannot reach (boot, paging, traps, real Xen) is
//! tested. A scenario is a name, a one-line description and a function; most are one
//! call to [`check`]. The strings they wait for are the constants below, so they are
//! easy to adjust when the shim's or the guests' messages change.

use std::path::PathBuf;
use std::time::Duration;

use crate::attacks::{self, Answer, Attack};
use crate::bundle::{self, Role};
use crate::images::Images;
use crate::qemu::{self, Accel, Control, Outcome};
use crate::xen;

/// The greeting of `examples/hello`.
pub const HELLO_GREETING: &str = "Hello from";
/// The shim's report that hello, as domain 0, powered off.
pub const SHIM_HELLO_POWERED_OFF: &str = "(shim) d0 (hello) shut down: poweroff";
/// libos's diagnostic for `examples/crash` (a write through a null pointer, in
/// kernel mode), as Xen 4.17 delivers the fault: these lines, in this order.
pub const LIBOS_PF_REPORT: &[&str] = &[
    "libos: fatal exception #PF page fault (vector 14) in kernel mode, error code 0x2",
    "rip=0xffffffff8",
    "cr2=0x0000000000000010 (write, not present)",
    "rax=",
    "libos: crashing the domain",
];
/// The shim's report that the crash example shut itself down with SHUTDOWN_crash.
pub const SHIM_CRASH_SHUTDOWN: &str = "(shim) d0 (crash) shut down: crash";
/// The pagetables example's last line.
pub const PAGETABLES_SUCCESS: &str = "pagetables: success";
/// Xen 4.17 when dom0 crashes (it then resets the machine; QEMU has -no-reboot).
pub const XEN_DOM0_CRASHED: &str = "Hardware Dom0 crashed";
/// The shim, still running after the crash, once no domain is left.
pub const SHIM_NO_DOMAINS_LEFT: &str = "(shim) no domains left";
/// Xen 4.17 when dom0 powers off (`hwdom_shutdown`, SHUTDOWN_poweroff). Xen then halts
/// the machine but QEMU keeps running, so the scenario stops QEMU itself.
pub const XEN_DOM0_HALTED: &str = "Hardware Dom0 halted";
/// Xen 4.17 lines that mean the run failed: no point waiting for the timeout.
pub const XEN_FAILURES: &[&str] = &["Panic on CPU", "Hardware Dom0 crashed"];

/// examples/timers' lines: every firing, in deadline order (one-shots of 30, 10, 20
/// and 5 ms, a periodic task every 7 ms), then the guest's own check.
pub const TIMERS_LINES: &[&str] = &[
    "timers: vCPU 0 up and running",
    "timers: system time",
    "timers: sleep 5 ms fired",
    "timers: periodic #1 fired",
    "timers: sleep 10 ms fired",
    "timers: periodic #2 fired",
    "timers: sleep 20 ms fired",
    "timers: periodic #3 fired",
    "timers: periodic #4 fired",
    "timers: sleep 30 ms fired",
    "timers: periodic #5 fired",
    "timers: periodic #6 fired",
    "timers: OK: 10 timers fired in deadline order, none early",
];
/// examples/pingpong's lines for `loopback rounds=10000`.
pub const PINGPONG_LOOPBACK_LINES: &[&str] = &[
    "pingpong: loopback: ports",
    "pingpong: a masked event stayed pending and was delivered on unmask",
    "is unbound again",
    "pingpong: ping: port",
    "pingpong: pong: bound port",
    "said hello",
    "pingpong: OK: loopback, 10000 rounds: ping sent 10000 received 10000, pong received 10000 sent 10000; no lost or duplicated event",
];

/// Lines kept in a failure report.
pub(crate) const TAIL: usize = 30;

/// What scenarios run with.
pub struct Ctx<'a> {
    pub images: &'a Images,
    pub target_dir: PathBuf,
    pub accel: Accel,
    pub verbose: bool,
}

/// What a scenario runs.
pub type RunFn = dyn Fn(&Ctx) -> Result<Pass, Failure>;

/// One scenario.
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub run: Box<RunFn>,
}

impl Scenario {
    pub(crate) fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        run: impl Fn(&Ctx) -> Result<Pass, Failure> + 'static,
    ) -> Scenario {
        Scenario {
            name: name.into(),
            description: description.into(),
            run: Box::new(run),
        }
    }
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

/// Every scenario, in the order `cargo xtask test` runs them: the fixed ones, one
/// `attack-NAME` per entry of [`attacks::ATTACKS`], then the Xen references.
pub fn all() -> Vec<Scenario> {
    let mut v = vec![
        Scenario::new("hello", "shim boots examples/hello as dom0: greeting printed, powers off (exit 0)", hello),
        Scenario::new("crash", "a guest faults: shim reports a crash with rip/cr2 and keeps running", crash),
        Scenario::new("crash-gp", "a guest runs a privileged instruction (hlt): #GP reported, guest crashed", crash_gp),
        Scenario::new("crash-panic", "a guest panics: libos logs it and shuts down with SHUTDOWN_crash", crash_panic),
        Scenario::new("pagetables", "a guest builds, pins, switches to and tears down page tables of its own (needs the shim's PV MMU)", pagetables),
        Scenario::new("usermode", "a PV kernel with a user process: syscall callback, int gates by DPL, #GP/#PF from user mode, GS bases (as on Xen)", usermode),
        Scenario::new("cpu", "CPUID (forced emulation), MSRs, segment bases, lazy FPU (#NM), in/cli/sti under the virtual IOPL (as on Xen)", cpu),
        Scenario::new("third-party-grub", "GRUB's PV image (Debian) alone as dom0: notes read, grant table and PV MMU set up, then it faults for want of a console ring (dom0 has none), crash contained", third_party_grub),
        Scenario::new("third-party-linux", "Debian's Linux 6.1 PV kernel: builds, pins and switches to its own page tables and prints its first lines, gets past vcpu_op and event-channel set-up to its debug registers", third_party_linux),
        Scenario::new("hello3", "three domains from one bundle (dom0 + two domUs) each greet and power off; the machine ends when the last one does", hello3),
        Scenario::new("timers", "examples/timers: sleeps and a periodic task fire in deadline order, never early (VIRQ_TIMER, set_timer_op, SCHEDOP_block/poll, runstate)", timers),
        Scenario::new("pingpong-loopback", "examples/pingpong loopback: 10,000 round trips over a loopback interdomain channel; masked events delivered on unmask", pingpong_loopback),
        Scenario::new("pingpong", "two domUs ping-pong 10,000 times over an interdomain channel: no lost or duplicated event", pingpong),
        Scenario::new("spin", "a domU that never blocks beside a domU that must finish its timers: the timers fire in order, never early, and the worker powers off while the spinner still spins", spin),
        Scenario::new("pingpong-crash", "a domU crashes mid-run; its peer keeps going, sees the port closed and powers off", pingpong_crash),
        Scenario::new("attack-evtchn-exhaust-domu", "hostile domU allocates ports until refused: the per-domain limit (1023 ports) holds and it goes on", attack_evtchn_exhaust_domu),
        Scenario::new("dom0-ctl", "dom0 (examples/ctl) lists domains, pauses a spinning domU (its cpu time stops), unpauses it (it runs again), destroys it (gone from the list); the domU's own domctl/sysctl calls get -EPERM", dom0_ctl),
        Scenario::new("dom0-ctl-alone", "dom0 (examples/ctl) alone: listed and running, nothing above it, may not pause/unpause/destroy itself (answers as Xen's)", dom0_ctl_alone),
        Scenario::new("xen-hello", "upstream Xen 4.17 boots examples/hello as dom0: greeting printed", xen_hello),
    ];
    let xen_at = v
        .iter()
        .position(|s| s.name.starts_with("xen-"))
        .unwrap_or(v.len());
    let attacks = attacks::ATTACKS.iter().map(|a| {
        Scenario::new(
            format!("attack-{}", a.name),
            format!("hostile guest: {}; answer as Xen's", a.what),
            move |ctx| attack_on_shim(ctx, a),
        )
    });
    v.splice(xen_at..xen_at, attacks);
    #[rustfmt::skip]
    v.extend(crate::dom0_scenarios::all());
    v.extend([
        Scenario::new("xen-crash", "upstream Xen 4.17 delivers a guest page fault to libos's handler: diagnostic, then crash", xen_crash),
        Scenario::new("xen-pagetables", "upstream Xen 4.17 runs examples/pagetables: the reference for scenario pagetables", xen_pagetables),
        Scenario::new("xen-usermode", "upstream Xen 4.17 runs examples/usermode: the reference for scenario usermode", xen_usermode),
        Scenario::new("xen-dom0-ctl-alone", "upstream Xen 4.17 runs examples/ctl alone: the reference for scenario dom0-ctl-alone", xen_dom0_ctl_alone),
        Scenario::new("xen-cpu", "upstream Xen 4.17 runs examples/cpu: the reference for scenario cpu", xen_cpu),
        Scenario::new("xen-timers", "upstream Xen 4.17 runs examples/timers: sleeps and a periodic task fire in deadline order, never early (VIRQ_TIMER, set_timer_op, SCHEDOP_block)", xen_timers),
        Scenario::new("xen-pingpong-loopback", "upstream Xen 4.17 runs examples/pingpong loopback: 10,000 event round trips over a loopback interdomain channel, none lost or duplicated; masked events delivered on unmask", xen_pingpong_loopback),
        Scenario::new("xen-attack-all", "upstream Xen 4.17 answers every non-fatal attack: the reference codes of the attack table", xen_attack_all),
    ]);
    for a in attacks::ATTACKS.iter().filter(|a| a.xen == Answer::Crash) {
        v.push(Scenario::new(
            format!("xen-attack-{}", a.name),
            format!("upstream Xen 4.17 crashes the domain for: {}", a.what),
            move |ctx| xen_attack_fatal(ctx, a),
        ));
    }
    v
}

/// `cargo xtask test --list`.
pub fn list() {
    for s in all() {
        println!("{:<32} {}", s.name, s.description);
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
            anywhere: &[],
        },
    )
}

fn crash(ctx: &Ctx) -> Result<Pass, Failure> {
    let expect: Vec<&str> = LIBOS_PF_REPORT
        .iter()
        .copied()
        .chain([SHIM_CRASH_SHUTDOWN, SHIM_NO_DOMAINS_LEFT])
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
            anywhere: &[],
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
                "libos: fatal exception #GP general protection (vector 13) in kernel mode, error code 0x0",
                "libos: crashing the domain",
                SHIM_CRASH_SHUTDOWN,
                SHIM_NO_DOMAINS_LEFT,
            ],
            fail_on: &["still alive"],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
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
            anywhere: &[],
        },
    )
}

/// GRUB alone as dom0: a dom0 has no console ring nor xenstore (Xen gives it none
/// either), which GRUB needs, so it faults; this checks that the shim loads a kernel
/// built by others from its notes, runs its grant-table and PV MMU set-up, and contains
/// the fault. GRUB runs properly as a domU: `third-party-grub-domu`.
fn third_party_grub(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::ShimGrub,
            expect: &[
                "(shim) d0: GRUB (xen-3.0)",
                "(shim) d0 (GRUB) crashed",
                SHIM_NO_DOMAINS_LEFT,
            ],
            fail_on: &["PANIC", "fault in the shim"],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// Debian's Linux 6.1 PV kernel: through the PV MMU part of its start (its own page
/// tables built, pinned and switched to, the bootstrap L4 unpinned, trap table, GDT,
/// segment bases, IOPL), printing its first lines through `console_io`, past `vcpu_op`
/// and its event-channel set-up, up to `get_debugreg` (not virtualised).
fn third_party_linux(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::ShimLinux {
                cmdline: "earlyprintk=xen console=hvc0",
            },
            expect: &[
                "(shim) d0: linux (xen-3.0)",
                "mapping kernel into physical memory",
                "about to get started...",
                // Past vcpu_op (issue 4): Linux goes on to its debug registers.
                "(shim) d0: hypercall 9 (get_debugreg) not implemented: -ENOSYS",
            ],
            fail_on: &[
                "PANIC",
                "fault in the shim",
                "(shim) d0 (linux) crashed",
                "(vcpu_op) not implemented",
            ],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(180),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// The toolstack hypercalls: dom0 controls a CPU-bound domU, which first tries the
/// same calls itself and must be refused.
fn dom0_ctl(ctx: &Ctx) -> Result<Pass, Failure> {
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
                    },
                    BundleGuest {
                        example: "spinner",
                        role: Role::DomU,
                        memory_mib: 16,
                        cmdline: "probe",
                        backends: false,
                    },
                ],
            },
            expect: &[
                "ctl: controlling d1 from d0",
                "ctl: domains with the domU paused:",
                "ctl:       0  r-----      65536",
                "ctl:       1  --p---      16384",
                "ctl: paused d1: cpu time stayed at",
                "ctl: unpaused d1: cpu time advanced by",
                "(shim) d0: destroying d1 (spinner)",
                "(shim) d1 (spinner) destroyed",
                "ctl: domains after destroying the domU:",
                "ctl:       0  r-----      65536",
                "ctl: destroyed d1: gone from the list",
                "ctl: OK",
                "(shim) d0 (ctl) shut down: poweroff",
            ],
            fail_on: &[
                "ctl: FAILED",
                "ALLOWED",
                "spinner: probe: FAILED",
                "fatal exception",
            ],
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            // The domU's probe, interleaved with dom0's lines.
            anywhere: &["(d1) spinner: probe: every toolstack call refused with -EPERM"],
        },
    )
}

/// What examples/ctl prints alone, on the shim and on Xen alike.
const CTL_ALONE: &[&str] = &[
    "ctl: alone: checking the calls on d0 itself",
    "ctl: alone: d0 is r-----",
    "ctl: alone: getdomaininfo above d0: -ESRCH, of DOMID_SELF: -EINVAL",
    "ctl: alone: pause, unpause, destroy of itself: -EINVAL",
    "ctl: OK",
];

fn dom0_ctl_alone(ctx: &Ctx) -> Result<Pass, Failure> {
    shim_lines(ctx, "ctl", CTL_ALONE, &[])
}

fn xen_dom0_ctl_alone(ctx: &Ctx) -> Result<Pass, Failure> {
    let expect: Vec<&str> = CTL_ALONE.iter().copied().chain([XEN_DOM0_HALTED]).collect();
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "ctl",
                guest_cmdline: "",
            },
            expect: &expect,
            fail_on: &[
                "ctl: FAILED",
                "fatal exception",
                "Panic on CPU",
                XEN_DOM0_CRASHED,
            ],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(180),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn xen_hello(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "hello",
                guest_cmdline: "",
            },
            expect: &[HELLO_GREETING, XEN_DOM0_HALTED],
            fail_on: XEN_FAILURES,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(180),
            first_guest_line: Some(HELLO_GREETING),
            anywhere: &[],
        },
    )
}

fn pagetables(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest: "pagetables",
                guest_cmdline: "",
            },
            expect: &[
                "pagetables: pinned",
                "pagetables: running on the new tables",
                "pagetables: left-out chunk",
                "pagetables: back on the boot tables",
                PAGETABLES_SUCCESS,
                "(shim) d0 (pagetables) shut down: poweroff",
            ],
            fail_on: &["FAILED", "fatal exception"],
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn xen_pagetables(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "pagetables",
                guest_cmdline: "",
            },
            expect: &[
                "pagetables: pinned",
                "pagetables: running on the new tables",
                "pagetables: left-out chunk",
                "pagetables: back on the boot tables",
                PAGETABLES_SUCCESS,
                XEN_DOM0_HALTED,
            ],
            fail_on: &[
                "FAILED",
                "fatal exception",
                "Panic on CPU",
                XEN_DOM0_CRASHED,
            ],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// examples/usermode's lines, the same on the shim and on Xen. The `int $0x81` error
/// code is checked by the guest (hardware's `(0x81 << 3) | 2`, or QEMU TCG's
/// `(0x81 << 4) | 2` that upstream Xen passes on); the shim scenario also wants
/// hardware's.
const USERMODE_LINES: &[&str] = &[
    "usermode: syscall callback, kernel stack, trap table",
    "usermode: user base pointer: the kernel's L4",
    "usermode: GS bases set: kernel mode reads %gs:0 = 0x6b65726e656c6773",
    "usermode: swapgs in the kernel: #GP error code 0x0",
    "usermode: entering user mode",
    "usermode: syscall from user mode reached the syscall callback",
    "usermode: int $0x80 from user mode reached the DPL-3 gate",
    "usermode: int $0x81 (DPL 0) from user mode: #GP error code",
    "usermode: hlt in user mode: #GP error code 0x0, cs=0xe033",
    "usermode: mov %cr3 in user mode: #GP error code 0x0, cs=0xe033",
    "usermode: user read of an unmapped address: #PF error code 0x4 (user, read, not present), cr2=0x180dead0000",
    "usermode: exit syscall from user mode",
    "usermode: success",
];

/// examples/cpu's lines, the same on the shim and on Xen (feature bits and maximum
/// leaves are printed by the guest, not checked).
const CPU_LINES: &[&str] = &[
    "cpu: cpuid 0x40000000: \"XenVMMXenVMM\"",
    "cpu: cpuid 0x40000001: version 4.17 (xen_version says 4.17)",
    "cpu: cpuid 0: vendor",
    "cpu: cpuid 1: the hypervisor bit is set",
    "cpu: wrmsr/rdmsr FS_BASE",
    "cpu: set_segment_base(FS)",
    "cpu: set_segment_base(GS_KERNEL, GS_USER)",
    "cpu: wrmsr GS_BASE, SHADOW_GS_BASE",
    "cpu: rdmsr APIC_BASE: 0xfee00900",
    "cpu: wrmsr APIC_BASE: fault #GP error code 0x0",
    "cpu: rdmsr EFER 0xd01; writing it back is allowed",
    "cpu: rdmsr LSTAR: fault #GP error code 0x0",
    "cpu: fpu_taskswitch(1): CR0.TS reads 1",
    "cpu: FPU use with TS set: fault #NM",
    "cpu: after #NM, CR0.TS is clear and the FPU works",
    "cpu: fpu_taskswitch(1) then (0): the FPU works",
    "cpu: fpu_taskswitch(1) then clts: CR0.TS clear, the FPU works",
    "cpu: in 0x40 without virtual IOPL: fault #GP error code 0x0",
    "cpu: cli without virtual IOPL: fault #GP error code 0x0",
    "cpu: sti without virtual IOPL: fault #GP error code 0x0",
    "cpu: with architectural_iopl: in 0x40 (a port dom0 may not use) reads 0xff",
    "cpu: with architectural_iopl: cli and sti run and leave the event mask alone",
    "(saved mask 1); iret with the frame as delivered returns, events still masked",
    "cpu: success",
];

/// A guest that prints `lines` and powers off, on the shim.
fn shim_lines(
    ctx: &Ctx,
    guest: &str,
    lines: &[&str],
    extra: &[(usize, &str)],
) -> Result<Pass, Failure> {
    shim_lines_with(ctx, guest, "", lines, extra)
}

/// [`shim_lines`] with a guest command line.
fn shim_lines_with(
    ctx: &Ctx,
    guest: &str,
    guest_cmdline: &str,
    lines: &[&str],
    extra: &[(usize, &str)],
) -> Result<Pass, Failure> {
    let mut expect: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for (i, l) in extra.iter().rev() {
        expect[*i] = format!("{}{}", expect[*i], l);
    }
    expect.push(format!("(shim) d0 ({guest}) shut down: poweroff"));
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Shim {
                guest,
                guest_cmdline,
            },
            expect: &expect,
            fail_on: &["FAILED", "fatal exception"],
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// The same guest on upstream Xen 4.17.
fn xen_lines(ctx: &Ctx, guest: &str, lines: &[&str]) -> Result<Pass, Failure> {
    xen_lines_with(ctx, guest, "", lines, Duration::from_secs(60))
}

/// A guest with a command line that prints `lines` and powers off, on upstream Xen 4.17.
fn xen_lines_with(
    ctx: &Ctx,
    guest: &str,
    guest_cmdline: &str,
    lines: &[&str],
    timeout: Duration,
) -> Result<Pass, Failure> {
    let expect: Vec<&str> = lines.iter().copied().chain([XEN_DOM0_HALTED]).collect();
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest,
                guest_cmdline,
            },
            expect: &expect,
            fail_on: &[
                "FAILED",
                "fatal exception",
                "Panic on CPU",
                XEN_DOM0_CRASHED,
            ],
            end: End::StopWhenSeen,
            timeout,
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

fn xen_timers(ctx: &Ctx) -> Result<Pass, Failure> {
    xen_lines(ctx, "timers", TIMERS_LINES)
}

fn xen_pingpong_loopback(ctx: &Ctx) -> Result<Pass, Failure> {
    xen_lines_with(
        ctx,
        "pingpong",
        "loopback rounds=10000",
        PINGPONG_LOOPBACK_LINES,
        Duration::from_secs(180),
    )
}

/// A bundle scenario: `domains` boot together; `anywhere` lines must all appear (the
/// domains' output interleaves), nothing in `fail_on` may, and QEMU must end with `end`.
fn bundle_lines(
    ctx: &Ctx,
    domains: &[BundleGuest],
    anywhere: &[&str],
    fail_on: &[&str],
    end: Outcome,
) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains },
            expect: &[],
            fail_on,
            end: End::Outcome(end),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere,
        },
    )
}

pub(crate) fn domu<'a>(example: &'a str, cmdline: &'a str) -> BundleGuest<'a> {
    BundleGuest {
        example,
        role: Role::DomU,
        memory_mib: 16,
        cmdline,
        backends: false,
    }
}

fn hello3(ctx: &Ctx) -> Result<Pass, Failure> {
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
            anywhere: &[
                "(shim) bundle: 3 domains",
                "flags: 0x3 (privileged: true, initial domain: true)",
                "(d1)   command line: \"greeting from d1\"",
                "(d2)   command line: \"\"",
                "(d1)   flags: 0x0 (privileged: false, initial domain: false)",
                "(shim) d0 (hello) shut down: poweroff",
                "(shim) d1 (hello-1) shut down: poweroff",
                "(shim) d2 (hello-2) shut down: poweroff",
            ],
        },
    )
}

fn timers(ctx: &Ctx) -> Result<Pass, Failure> {
    shim_lines(ctx, "timers", TIMERS_LINES, &[])
}

fn pingpong_loopback(ctx: &Ctx) -> Result<Pass, Failure> {
    shim_lines_with(
        ctx,
        "pingpong",
        "loopback rounds=10000",
        PINGPONG_LOOPBACK_LINES,
        &[],
    )
}

fn pingpong(ctx: &Ctx) -> Result<Pass, Failure> {
    bundle_lines(
        ctx,
        &[
            domu("pingpong", "ping peer=2 rounds=10000"),
            domu("pingpong", "pong peer=1 rounds=10000"),
        ],
        &[
            "(d1) pingpong: OK: ping, 10000 rounds with domain 2; no lost or duplicated event",
            "(d2) pingpong: OK: pong",
            "(shim) d1 (pingpong) shut down: poweroff",
            "(shim) d2 (pingpong-1) shut down: poweroff",
        ],
        &["FAILED", "crashed", "PANIC"],
        Outcome::PowerOff,
    )
}

fn spin(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &[domu("spinner", "every=2000000"), domu("timers", "")],
            },
            // After the worker is done, the spinner is still running.
            expect: &[
                "(shim) d2 (timers) shut down: poweroff",
                "(d1) spinner: heartbeat",
            ],
            fail_on: &["FAILED", "crashed", "PANIC"],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[
                "(d1) spinner: spinning",
                "(d2) timers: OK: 10 timers fired in deadline order, none early",
            ],
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
        &[
            "(d2) pingpong: pong: crashing on purpose after 500 rounds",
            "(shim) d2 (pingpong-1) shut down: crash",
            "(d1) pingpong: ping: saw the port closed by domain 2 after 500 rounds",
            "(shim) d1 (pingpong) shut down: poweroff",
        ],
        &["FAILED", "d1 (pingpong) crashed", "PANIC"],
        Outcome::PowerOff,
    )
}

fn attack_evtchn_exhaust_domu(ctx: &Ctx) -> Result<Pass, Failure> {
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
}

fn usermode(ctx: &Ctx) -> Result<Pass, Failure> {
    // Index 7: the int $0x81 line, where the shim gives hardware's error code.
    shim_lines(ctx, "usermode", USERMODE_LINES, &[(7, " 0x40a at")])
}

fn xen_usermode(ctx: &Ctx) -> Result<Pass, Failure> {
    xen_lines(ctx, "usermode", USERMODE_LINES)
}

fn cpu(ctx: &Ctx) -> Result<Pass, Failure> {
    shim_lines(ctx, "cpu", CPU_LINES, &[])
}

fn xen_cpu(ctx: &Ctx) -> Result<Pass, Failure> {
    xen_lines(ctx, "cpu", CPU_LINES)
}

fn xen_crash(ctx: &Ctx) -> Result<Pass, Failure> {
    let expect: Vec<&str> = LIBOS_PF_REPORT
        .iter()
        .copied()
        .chain([XEN_DOM0_CRASHED])
        .collect();
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "crash",
                guest_cmdline: "pagefault",
            },
            expect: &expect,
            fail_on: &["Panic on CPU", "still alive"],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// One attack on the shim: the shim must answer as Xen does ([`attacks::ATTACKS`]).
fn attack_on_shim(ctx: &Ctx, a: &Attack) -> Result<Pass, Failure> {
    let mut lines = attacks::expected_lines(a);
    let (end, fail_on): (Outcome, &[&str]) = match a.xen {
        Answer::Result(_) => {
            lines.push("(shim) d0 (attack) shut down: poweroff".into());
            (
                Outcome::PowerOff,
                &["legitimate call FAILED", "fatal exception"],
            )
        }
        Answer::Crash => {
            lines.push("(shim) d0 (attack) crashed".into());
            (Outcome::Crash, &["still alive", "fatal exception"])
        }
    };
    lines.push(SHIM_NO_DOMAINS_LEFT.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Shim {
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

/// Every non-fatal attack on Xen in one boot (`attack all`): the reference codes.
fn xen_attack_all(ctx: &Ctx) -> Result<Pass, Failure> {
    let mut lines: Vec<String> = attacks::ATTACKS
        .iter()
        .filter(|a| a.xen != Answer::Crash)
        .flat_map(attacks::expected_lines)
        .collect();
    lines.push(attacks::ALL_DONE.into());
    lines.push(XEN_DOM0_HALTED.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "attack",
                guest_cmdline: "all",
            },
            expect: &expect,
            fail_on: &[
                "legitimate call FAILED",
                "fatal exception",
                "Panic on CPU",
                XEN_DOM0_CRASHED,
            ],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// An attack Xen answers by crashing the domain.
fn xen_attack_fatal(ctx: &Ctx, a: &Attack) -> Result<Pass, Failure> {
    let mut lines = attacks::expected_lines(a);
    lines.push(XEN_DOM0_CRASHED.into());
    let expect: Vec<&str> = lines.iter().map(String::as_str).collect();
    check(
        ctx,
        Check {
            boot: Boot::Xen {
                guest: "attack",
                guest_cmdline: a.name,
            },
            expect: &expect,
            fail_on: &["still alive", "fatal exception", "Panic on CPU"],
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
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
    Xen {
        guest: &'a str,
        guest_cmdline: &'a str,
    },
    /// The shim with GRUB's Xen PV image (built by others) as its only domain.
    ShimGrub,
    /// The shim with Debian's Linux kernel as its only, privileged domain, with this
    /// kernel command line.
    ShimLinux { cmdline: &'a str },
    /// The shim with a domain bundle of examples, named after them as `cargo xtask run
    /// hello hello` names them (`hello`, `hello-1`, ...); dom0 gets domain id 0, the
    /// domUs 1, 2, ... in this order.
    Bundle { domains: &'a [BundleGuest<'a>] },
    /// The shim with the domain bundle of a manifest (a path from the workspace root,
    /// e.g. `bundles/hello3.toml`).
    Manifest { path: &'a str },
}

/// One domain of a [`Boot::Bundle`].
pub struct BundleGuest<'a> {
    /// The example under `examples/`.
    pub example: &'a str,
    pub role: Role,
    pub memory_mib: u64,
    pub cmdline: &'a str,
    /// The dom0 runs xenstored and the console back-end (`backends = true` in a
    /// manifest): domUs get ring event channels and start paused.
    pub backends: bool,
}

/// The manifest of a [`Boot::Bundle`].
pub(crate) fn bundle_manifest(domains: &[BundleGuest]) -> anyhow::Result<bundle::Manifest> {
    let mut manifest = bundle::Manifest::named(
        domains
            .iter()
            .map(|d| {
                // An example's name, or a path (with a `/`) to a PV kernel.
                let image = bundle::ImageRef::parse(d.example, std::path::Path::new(""));
                (image, d.role, d.memory_mib << 10, d.cmdline.into())
            })
            .collect(),
    )?;
    for (spec, d) in manifest.domains.iter_mut().zip(domains) {
        spec.backends = d.backends;
    }
    manifest.check()?;
    Ok(manifest)
}

/// The bundle file of a [`Boot::Bundle`] or [`Boot::Manifest`] and the machine memory
/// that holds its domains. Scenarios run one at a time, so they share one file.
pub(crate) fn scenario_bundle(
    ctx: &Ctx,
    manifest: &bundle::Manifest,
) -> anyhow::Result<(PathBuf, String)> {
    let root = crate::bindgen::workspace_root();
    let files = manifest.image_files(&root, |example| ctx.images.guest(example))?;
    let out = ctx.target_dir.join("images/scenario.bundle");
    manifest.write_files(&files, &out)?;
    let memory = (manifest.total_mib() + 64).next_multiple_of(64).max(256);
    Ok((out, format!("{memory}M")))
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
    /// Substrings that must each appear on some line, in any order (domains running
    /// side by side interleave their output).
    pub anywhere: &'a [&'a str],
}

/// Boots, waits for the expected lines in order, checks how the run ended.
pub fn check(ctx: &Ctx, c: Check) -> Result<Pass, Failure> {
    check_typing(ctx, c, &[])
}

/// [`check`], typing on the serial console: after the first line containing each
/// pattern of `typing` (in order), its bytes.
pub fn check_typing(
    ctx: &Ctx,
    c: Check,
    typing: &[(&str, &'static [u8])],
) -> Result<Pass, Failure> {
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
        Boot::ShimLinux { cmdline } => qemu::shim_command(
            &ctx.images.shim,
            &crate::linux::ensure(&ctx.target_dir)?,
            &qemu::shim_cmdline("dom0_mem=256M", cmdline),
            ctx.accel,
            "512M",
        ),
        Boot::Bundle { domains } => {
            let (module, memory) = scenario_bundle(ctx, &bundle_manifest(domains)?)?;
            qemu::shim_command(&ctx.images.shim, &module, "", ctx.accel, &memory)
        }
        Boot::Manifest { path } => {
            let manifest = bundle::Manifest::load(&crate::bindgen::workspace_root().join(path))?;
            let (module, memory) = scenario_bundle(ctx, &manifest)?;
            qemu::shim_command(&ctx.images.shim, &module, "", ctx.accel, &memory)
        }
        Boot::Xen {
            guest,
            guest_cmdline,
        } => qemu::xen_command(
            &xen::ensure(&ctx.target_dir)?,
            &ctx.images.guest(guest)?,
            guest_cmdline,
            ctx.accel,
        ),
    };
    let stop_when_seen = matches!(c.end, End::StopWhenSeen);

    let mut seen = 0;
    let mut typed = 0;
    let mut found = vec![false; c.anywhere.len()];
    let mut fatal: Option<String> = None;
    let captured = qemu::run_captured(cmd, c.timeout, ctx.verbose, |line| {
        if seen < c.expect.len() && line.contains(c.expect[seen]) {
            seen += 1;
        }
        for (f, a) in found.iter_mut().zip(c.anywhere) {
            *f |= line.contains(a);
        }
        if let Some(f) = c.fail_on.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        if stop_when_seen && seen == c.expect.len() && found.iter().all(|&f| f) {
            return Control::Stop;
        }
        match typing.get(typed) {
            Some(&(pattern, bytes)) if line.contains(pattern) => {
                typed += 1;
                Control::Type(bytes)
            }
            _ => Control::Continue,
        }
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
    for (_, missing) in found.iter().zip(c.anywhere).filter(|(f, _)| !**f) {
        reasons.push(format!("no line containing {missing:?}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Boot::Bundle` becomes a bundle file of the built examples that the shim's
    /// parser reads back (with stand-in images: no bare-metal build in host tests).
    #[test]
    fn bundle_boots_write_the_examples_into_one_module() {
        let target_dir = crate::images::target_dir(&crate::bindgen::workspace_root())
            .join("xtask-tests/scenario-bundle");
        std::fs::create_dir_all(&target_dir).unwrap();
        let hello = target_dir.join("hello");
        let cpu = target_dir.join("cpu");
        std::fs::write(&hello, b"\x7fELF hello").unwrap();
        std::fs::write(&cpu, b"\x7fELF cpu").unwrap();
        let images = Images {
            dir: target_dir.clone(),
            shim: target_dir.join("shim"),
            guests: vec![("hello".into(), hello), ("cpu".into(), cpu)],
        };
        let ctx = Ctx {
            images: &images,
            target_dir,
            accel: Accel::Tcg,
            verbose: false,
        };
        let guest = |example, role, memory_mib, cmdline| BundleGuest {
            example,
            role,
            memory_mib,
            cmdline,
            backends: false,
        };
        let domains = [
            guest("hello", Role::Dom0, 64, "x"),
            guest("cpu", Role::DomU, 16, ""),
            guest("hello", Role::DomU, 300, "y z"),
        ];
        let (module, memory) = scenario_bundle(&ctx, &bundle_manifest(&domains).unwrap()).unwrap();
        assert_eq!(memory, "448M");
        let bytes = std::fs::read(module).unwrap();
        let b = hypervisor_shim::pv::build::bundle::parse(&bytes)
            .unwrap()
            .unwrap();
        let got: Vec<_> = b
            .domains
            .iter()
            .map(|d| (d.name, d.image, d.memory_kib >> 10, d.cmdline, d.role))
            .collect();
        assert_eq!(
            got,
            [
                ("hello", &b"\x7fELF hello"[..], 64, "x", Role::Dom0),
                ("cpu", &b"\x7fELF cpu"[..], 16, "", Role::DomU),
                ("hello-1", &b"\x7fELF hello"[..], 300, "y z", Role::DomU),
            ]
        );
    }
}
