//! Scenarios that run one guest on the shim and on upstream Xen 4.17, written once as a
//! [`Pair`] (guest, command line, expected lines, how it ends) and run with the
//! hypervisor as a parameter: `NAME` on the shim, `xen-NAME` on Xen, the reference it
//! must behave like. Where the two differ, the data says so: a [`Line`] that differs or
//! is checked on one side only, and a [`Side`] per hypervisor (description, timeout,
//! fatal lines of its own). How each hypervisor reports the guest's end (the shim's
//! `shut down` line and exit status, Xen's `Hardware Dom0 ...`) is derived from
//! [`Ends`].

use std::time::Duration;

use super::expected::{self, cpu, crash, ctl, hello, pagetables, pingpong, timers, usermode, Line};
use super::harness::{check, Boot, Check, Ctx, End, Failure, Hypervisor, Pass, Scenario};
use crate::qemu::Outcome;

/// How the guest ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// It powers off (SCHEDOP_shutdown, SHUTDOWN_poweroff).
    PowerOff,
    /// It shuts itself down with SHUTDOWN_crash.
    Crash,
}

/// What differs per hypervisor beside the lines.
pub struct Side {
    pub description: &'static str,
    pub timeout_secs: u64,
    /// Lines that fail the run at once, on this hypervisor only.
    pub fail_on: &'static [&'static str],
}

/// One guest, as dom0, on both hypervisors.
pub struct Pair {
    /// The shim scenario's name; the Xen one is `xen-NAME`.
    pub name: &'static str,
    /// The example under `examples/`.
    pub guest: &'static str,
    pub cmdline: &'static str,
    /// In order; the hypervisor's report of the end follows ([`Pair::expected`]).
    pub lines: &'static [Line],
    pub ends: Ends,
    /// Lines that fail the run at once on both.
    pub fail_on: &'static [&'static str],
    /// The line whose arrival time is reported.
    pub first_guest_line: Option<&'static str>,
    /// Lines that must appear on both, in any order.
    pub anywhere: &'static [&'static str],
    pub shim: Side,
    pub xen: Side,
}

impl Pair {
    pub fn side(&self, hv: Hypervisor) -> &Side {
        match hv {
            Hypervisor::Shim => &self.shim,
            Hypervisor::Xen => &self.xen,
        }
    }

    /// The lines to wait for on `hv`, in order: the guest's, then the hypervisor's
    /// report of its end.
    pub fn expected(&self, hv: Hypervisor) -> Vec<String> {
        let guest = self
            .lines
            .iter()
            .filter_map(|l| l.on(hv))
            .map(str::to_owned);
        let end = match (hv, self.ends) {
            (Hypervisor::Shim, Ends::PowerOff) => vec![expected::shim::powered_off(self.guest)],
            (Hypervisor::Shim, Ends::Crash) => vec![
                expected::shim::crash_shutdown(self.guest),
                expected::shim::NO_DOMAINS_LEFT.to_owned(),
            ],
            (Hypervisor::Xen, Ends::PowerOff) => vec![expected::xen::DOM0_HALTED.to_owned()],
            (Hypervisor::Xen, Ends::Crash) => vec![expected::xen::DOM0_CRASHED.to_owned()],
        };
        guest.chain(end).collect()
    }

    /// The lines that fail the run at once on `hv`: the pair's, the side's, and the
    /// hypervisor's own failures (Xen's panic; its dom0 crash unless that is the end).
    pub fn fail_on(&self, hv: Hypervisor) -> Vec<&'static str> {
        let own: &[&str] = match (hv, self.ends) {
            (Hypervisor::Shim, _) => &[],
            (Hypervisor::Xen, Ends::PowerOff) => {
                &[expected::xen::PANIC, expected::xen::DOM0_CRASHED]
            }
            (Hypervisor::Xen, Ends::Crash) => &[expected::xen::PANIC],
        };
        [self.fail_on, self.side(hv).fail_on, own].concat()
    }

    /// How the run must end: the shim ends QEMU with the guest's outcome; Xen does not
    /// end QEMU, which is stopped once every line has been seen.
    pub fn end(&self, hv: Hypervisor) -> End {
        match (hv, self.ends) {
            (Hypervisor::Shim, Ends::PowerOff) => End::Outcome(Outcome::PowerOff),
            (Hypervisor::Shim, Ends::Crash) => End::Outcome(Outcome::Crash),
            (Hypervisor::Xen, _) => End::StopWhenSeen,
        }
    }

    /// The scenario of this pair on `hv`.
    pub fn on(&'static self, hv: Hypervisor) -> Scenario {
        Scenario::new(
            hv.scenario_name(self.name),
            self.side(hv).description,
            move |ctx| self.run(ctx, hv),
        )
    }

    fn run(&self, ctx: &Ctx, hv: Hypervisor) -> Result<Pass, Failure> {
        let expect = self.expected(hv);
        let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
        check(
            ctx,
            Check {
                boot: Boot::Guest {
                    on: hv,
                    guest: self.guest,
                    guest_cmdline: self.cmdline,
                },
                expect: &expect,
                fail_on: &self.fail_on(hv),
                end: self.end(hv),
                timeout: Duration::from_secs(self.side(hv).timeout_secs),
                first_guest_line: self.first_guest_line,
                anywhere: self.anywhere,
            },
        )
    }
}

pub const HELLO: Pair = Pair {
    name: "hello",
    guest: "hello",
    cmdline: "",
    lines: hello::LINES,
    ends: Ends::PowerOff,
    fail_on: &[],
    first_guest_line: Some(hello::GREETING),
    anywhere: &[],
    shim: Side {
        description: "shim boots examples/hello as dom0: greeting printed, powers off (exit 0)",
        timeout_secs: 60,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 boots examples/hello as dom0: greeting printed",
        timeout_secs: 180,
        fail_on: &[],
    },
};

/// A write through a null pointer in kernel mode (`pagefault`, the guest's default).
pub const CRASH: Pair = Pair {
    name: "crash",
    guest: "crash",
    cmdline: "pagefault",
    lines: crash::PAGEFAULT,
    ends: Ends::Crash,
    fail_on: &[],
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "a guest faults: shim reports a crash with rip/cr2 and keeps running",
        timeout_secs: 60,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 delivers a guest page fault to libos's handler: diagnostic, then crash",
        timeout_secs: 60,
        fail_on: &[crash::STILL_ALIVE],
    },
};

pub const PAGETABLES: Pair = Pair {
    name: "pagetables",
    guest: "pagetables",
    cmdline: "",
    lines: pagetables::LINES,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "a guest builds, pins, switches to and tears down page tables of its own (needs the shim's PV MMU)",
        timeout_secs: 60,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/pagetables: the reference for scenario pagetables",
        timeout_secs: 60,
        fail_on: &[],
    },
};

pub const USERMODE: Pair = Pair {
    name: "usermode",
    guest: "usermode",
    cmdline: "",
    lines: usermode::LINES,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "a PV kernel with a user process: syscall callback, int gates by DPL, #GP/#PF from user mode, GS bases (as on Xen)",
        timeout_secs: 120,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/usermode: the reference for scenario usermode",
        timeout_secs: 60,
        fail_on: &[],
    },
};

pub const CPU: Pair = Pair {
    name: "cpu",
    guest: "cpu",
    cmdline: "",
    lines: cpu::LINES,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "CPUID (forced emulation), MSRs, segment bases, lazy FPU (#NM), in/cli/sti under the virtual IOPL (as on Xen)",
        timeout_secs: 120,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/cpu: the reference for scenario cpu",
        timeout_secs: 60,
        fail_on: &[],
    },
};

pub const IRET_MASKED: Pair = Pair {
    name: "iret-masked",
    guest: "cpu",
    cmdline: "iret",
    lines: cpu::IRET,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "a kernel takes int3 with events masked and returns through HYPERVISOR_iret with the frame as delivered (upcall mask in CS bits 32-39): it returns, no #GP (as on Xen)",
        timeout_secs: 60,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/cpu iret: the reference for scenario iret-masked",
        timeout_secs: 60,
        fail_on: &[],
    },
};

pub const TIMERS: Pair = Pair {
    name: "timers",
    guest: "timers",
    cmdline: "",
    lines: timers::LINES,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: timers::ONE_SHOTS,
    shim: Side {
        description: "examples/timers: sleeps and a periodic task fire, never early, each task's in its order and all in deadline order unless due at once (VIRQ_TIMER, set_timer_op, SCHEDOP_block/poll, runstate)",
        timeout_secs: 120,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/timers: sleeps and a periodic task fire, never early, each task's in its order and all in deadline order unless due at once (VIRQ_TIMER, set_timer_op, SCHEDOP_block)",
        timeout_secs: 60,
        fail_on: &[],
    },
};

pub const PINGPONG_LOOPBACK: Pair = Pair {
    name: "pingpong-loopback",
    guest: "pingpong",
    cmdline: "loopback rounds=10000",
    lines: pingpong::LOOPBACK,
    ends: Ends::PowerOff,
    fail_on: expected::GUEST_FAILED,
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "examples/pingpong loopback: 10,000 round trips over a loopback interdomain channel; masked events delivered on unmask",
        timeout_secs: 120,
        fail_on: &[],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/pingpong loopback: 10,000 event round trips over a loopback interdomain channel, none lost or duplicated; masked events delivered on unmask",
        timeout_secs: 180,
        fail_on: &[],
    },
};

/// examples/ctl alone: its calls on itself answered as Xen's.
pub const DOM0_CTL_ALONE: Pair = Pair {
    name: "dom0-ctl-alone",
    guest: "ctl",
    cmdline: "",
    lines: ctl::ALONE,
    ends: Ends::PowerOff,
    fail_on: &["fatal exception"],
    first_guest_line: None,
    anywhere: &[],
    shim: Side {
        description: "dom0 (examples/ctl) alone: listed and running, nothing above it, may not pause/unpause/destroy itself (answers as Xen's)",
        timeout_secs: 120,
        fail_on: &["FAILED"],
    },
    xen: Side {
        description: "upstream Xen 4.17 runs examples/ctl alone: the reference for scenario dom0-ctl-alone",
        timeout_secs: 180,
        fail_on: &["ctl: FAILED"],
    },
};

/// Every pair (the catalog decides where each side runs; its tests check that each
/// side of each of these runs).
#[cfg(test)]
pub const ALL: &[&Pair] = &[
    &HELLO,
    &CRASH,
    &PAGETABLES,
    &USERMODE,
    &CPU,
    &IRET_MASKED,
    &TIMERS,
    &PINGPONG_LOOPBACK,
    &DOM0_CTL_ALONE,
];

#[cfg(test)]
mod tests {
    use super::*;
    use Hypervisor::{Shim, Xen};

    #[test]
    fn each_pair_makes_two_scenarios_with_distinct_names() {
        for p in ALL {
            let [shim, xen] = Hypervisor::BOTH.map(|hv| p.on(hv));
            assert_eq!(shim.name, p.name);
            assert_eq!(xen.name, format!("xen-{}", p.name));
            assert_ne!(shim.description, xen.description, "{}", p.name);
        }
        let mut names: Vec<_> = ALL.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    /// Lines said to differ do, lines for one side are missing on the other, and the
    /// rest are the same on both.
    #[test]
    fn the_sides_differ_only_where_the_data_says() {
        for p in ALL {
            let [shim, xen] = Hypervisor::BOTH.map(|hv| p.expected(hv));
            // The shim reports a crash in two lines, everything else in one.
            let end_lines = |hv| match (hv, p.ends) {
                (Shim, Ends::Crash) => 2,
                _ => 1,
            };
            let (mut s, mut x) = (0, 0);
            for line in p.lines {
                match *line {
                    Line::Both(l) => {
                        assert_eq!((shim[s].as_str(), xen[x].as_str()), (l, l));
                        (s, x) = (s + 1, x + 1);
                    }
                    Line::Differs { shim: a, xen: b } => {
                        assert_ne!(a, b, "{}", p.name);
                        assert_eq!((shim[s].as_str(), xen[x].as_str()), (a, b));
                        (s, x) = (s + 1, x + 1);
                    }
                    Line::Only(Shim, l) => {
                        assert_eq!(shim[s], l);
                        assert!(!xen.iter().any(|x| x == l), "{}: {l:?} on Xen", p.name);
                        s += 1;
                    }
                    Line::Only(Xen, l) => {
                        assert_eq!(xen[x], l);
                        assert!(
                            !shim.iter().any(|s| s == l),
                            "{}: {l:?} on the shim",
                            p.name
                        );
                        x += 1;
                    }
                }
            }
            assert_eq!(
                (s, x),
                (shim.len() - end_lines(Shim), xen.len() - end_lines(Xen)),
                "{}",
                p.name
            );
        }
    }

    /// The overrides as they were when each pair was two hand-written scenarios.
    #[test]
    fn known_overrides_hold() {
        let usermode = |hv| USERMODE.expected(hv)[7].clone();
        assert!(usermode(Shim).ends_with("#GP error code 0x40a at"));
        assert!(usermode(Xen).ends_with("#GP error code"));
        assert_eq!(HELLO.expected(Shim).len(), 5);
        assert_eq!(HELLO.expected(Xen), ["Hello from", "Hardware Dom0 halted"]);
        assert_eq!(
            CRASH.expected(Shim)[5..],
            [
                "(shim) d0 (crash) shut down: crash",
                "(shim) no domains left"
            ]
        );
        assert_eq!(CRASH.expected(Xen)[5..], ["Hardware Dom0 crashed"]);
        assert_eq!(
            PINGPONG_LOOPBACK.expected(Shim).last().unwrap(),
            "(shim) d0 (pingpong) shut down: poweroff"
        );
    }

    #[test]
    fn each_hypervisor_ends_its_own_way() {
        for p in ALL {
            let xen_fail = p.fail_on(Xen);
            assert!(xen_fail.contains(&"Panic on CPU"), "{}", p.name);
            // Xen's dom0 crash fails a run unless it is the expected end.
            let crashes = p.ends == Ends::Crash;
            assert_eq!(
                xen_fail.contains(&"Hardware Dom0 crashed"),
                !crashes,
                "{}",
                p.name
            );
            assert!(matches!(p.end(Xen), End::StopWhenSeen));
            let want = if crashes {
                Outcome::Crash
            } else {
                Outcome::PowerOff
            };
            assert!(matches!(p.end(Shim), End::Outcome(o) if o == want));
            for hv in Hypervisor::BOTH {
                for f in p.fail_on(hv) {
                    assert!(
                        !p.expected(hv).iter().any(|l| l.contains(f)),
                        "{} on {hv:?}: an expected line contains the fatal {f:?}",
                        p.name
                    );
                }
            }
        }
    }
}
