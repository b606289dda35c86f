//! What the scenarios wait for, apart from the code that waits: one module per guest
//! (the lines it prints, in order) and per hypervisor (how each reports a guest's end),
//! so they are easy to adjust when the shim's or the guests' messages change. The
//! attacks' lines are built from their table (`attacks.rs`).
//!
//! A guest that runs on both hypervisors has its lines as [`Line`]s: most are printed
//! alike, and where the shim and Xen 4.17 differ the line says so.

use super::harness::Hypervisor;

/// One expected line of a guest that runs on the shim and on Xen 4.17.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// The same on both.
    Both(&'static str),
    /// Checked on this hypervisor only.
    Only(Hypervisor, &'static str),
    /// What each prints.
    Differs {
        shim: &'static str,
        xen: &'static str,
    },
}

impl Line {
    /// The text to wait for on `hv`, if it waits for one.
    pub fn on(self, hv: Hypervisor) -> Option<&'static str> {
        match (self, hv) {
            (Line::Both(l), _) => Some(l),
            (Line::Only(only, l), _) => (only == hv).then_some(l),
            (Line::Differs { shim, .. }, Hypervisor::Shim) => Some(shim),
            (Line::Differs { xen, .. }, Hypervisor::Xen) => Some(xen),
        }
    }
}

/// The shim's own lines.
pub mod shim {
    /// Once no domain is left (after a crash, the shim still runs).
    pub const NO_DOMAINS_LEFT: &str = "(shim) no domains left";

    /// The shim's report that d0 (`guest`) powered off.
    pub fn powered_off(guest: &str) -> String {
        format!("(shim) d0 ({guest}) shut down: poweroff")
    }

    /// The shim's report that d0 (`guest`) shut itself down with SHUTDOWN_crash.
    pub fn crash_shutdown(guest: &str) -> String {
        format!("(shim) d0 ({guest}) shut down: crash")
    }
}

/// Upstream Xen 4.17's own lines.
pub mod xen {
    /// When dom0 crashes (it then resets the machine; QEMU has -no-reboot).
    pub const DOM0_CRASHED: &str = "Hardware Dom0 crashed";
    /// When dom0 powers off (`hwdom_shutdown`, SHUTDOWN_poweroff). Xen then halts the
    /// machine but QEMU keeps running, so the scenario stops QEMU itself.
    pub const DOM0_HALTED: &str = "Hardware Dom0 halted";
    /// Xen itself failed.
    pub const PANIC: &str = "Panic on CPU";
}

/// Lines of a guest that found a check of its own failed, or took an unexpected fault.
pub const GUEST_FAILED: &[&str] = &["FAILED", "fatal exception"];

/// examples/hello.
pub mod hello {
    use super::Hypervisor::Shim;
    use super::Line::{self, Both, Only};

    /// The greeting.
    pub const GREETING: &str = "Hello from";
    /// As dom0; on Xen only the greeting is checked.
    pub const LINES: &[Line] = &[
        Both(GREETING),
        Only(Shim, "start_info: xen-3.0-x86_64, 16384 pages (64 MiB)"),
        Only(Shim, "flags: 0x3 (privileged: true, initial domain: true)"),
        Only(Shim, "heap works: sum of 1..=10 from a Vec is 55"),
    ];
    /// `bundles/hello3.toml`: dom0 and two domUs, in any order.
    pub const HELLO3: &[&str] = &[
        "(shim) bundle: 3 domains",
        "flags: 0x3 (privileged: true, initial domain: true)",
        "(d1)   command line: \"greeting from d1\"",
        "(d2)   command line: \"\"",
        "(d1)   flags: 0x0 (privileged: false, initial domain: false)",
        "(shim) d0 (hello) shut down: poweroff",
        "(shim) d1 (hello-1) shut down: poweroff",
        "(shim) d2 (hello-2) shut down: poweroff",
    ];
}

/// examples/crash.
pub mod crash {
    use super::Line::{self, Both};

    /// libos's diagnostic for `pagefault` (a write through a null pointer, in kernel
    /// mode), as both hypervisors deliver the fault: these lines, in this order.
    pub const PAGEFAULT: &[Line] = &[
        Both("libos: fatal exception #PF page fault (vector 14) in kernel mode, error code 0x2"),
        Both("rip=0xffffffff8"),
        Both("cr2=0x0000000000000010 (write, not present)"),
        Both("rax="),
        Both("libos: crashing the domain"),
    ];
    /// `gp`: a privileged instruction (hlt) in kernel mode.
    pub const GP: &[&str] = &[
        "crash: about to fault with 'gp'",
        "libos: fatal exception #GP general protection (vector 13) in kernel mode, error code 0x0",
        "libos: crashing the domain",
    ];
    /// `panic`.
    pub const PANIC: &[&str] = &["panic: panicked at"];
    /// The guest's line when the fault it asked for did not come.
    pub const STILL_ALIVE: &str = "still alive";
}

/// examples/pagetables.
pub mod pagetables {
    use super::Line::{self, Both};

    pub const LINES: &[Line] = &[
        Both("pagetables: P2M frame lists in shared_info: all "),
        Both("pagetables: pinned"),
        Both("pagetables: running on the new tables"),
        Both("pagetables: left-out chunk"),
        Both("pagetables: back on the boot tables"),
        Both("pagetables: success"),
    ];
}

/// examples/usermode.
pub mod usermode {
    use super::Line::{self, Both, Differs};

    /// The `int $0x81` error code is checked by the guest (hardware's `(0x81 << 3) | 2`,
    /// or QEMU TCG's `(0x81 << 4) | 2` that upstream Xen passes on); on the shim the
    /// scenario also wants hardware's.
    pub const LINES: &[Line] = &[
        Both("usermode: syscall callback, kernel stack, trap table"),
        Both("usermode: user base pointer: the kernel's L4"),
        Both("usermode: GS bases set: kernel mode reads %gs:0 = 0x6b65726e656c6773"),
        Both("usermode: swapgs in the kernel: #GP error code 0x0"),
        Both("usermode: entering user mode"),
        Both("usermode: syscall from user mode reached the syscall callback"),
        Both("usermode: int $0x80 from user mode reached the DPL-3 gate"),
        Differs {
            shim: "usermode: int $0x81 (DPL 0) from user mode: #GP error code 0x40a at",
            xen: "usermode: int $0x81 (DPL 0) from user mode: #GP error code",
        },
        Both("usermode: hlt in user mode: #GP error code 0x0, cs=0xe033"),
        Both("usermode: mov %cr3 in user mode: #GP error code 0x0, cs=0xe033"),
        Both("usermode: user read of an unmapped address: #PF error code 0x4 (user, read, not present), cr2=0x180dead0000"),
        Both("usermode: exit syscall from user mode"),
        Both("usermode: success"),
    ];
}

/// examples/cpu.
pub mod cpu {
    use super::Line::{self, Both};

    /// `cpu iret`: a kernel returns from `int3` taken with events masked through
    /// `HYPERVISOR_iret`, the frame exactly as delivered (saved upcall mask in bits
    /// 32-39 of the CS slot).
    pub const IRET: &[Line] = &[
        Both("cpu: int3 with events masked: CS slot 0x10000e030 (saved mask 1); iret with the frame as delivered returns, events still masked"),
        Both("cpu: success"),
    ];

    /// The same on both (feature bits and maximum leaves are printed by the guest, not
    /// checked).
    pub const LINES: &[Line] = &[
        Both("cpu: cpuid 0x40000000: \"XenVMMXenVMM\""),
        Both("cpu: cpuid 0x40000001: version 4.17 (xen_version says 4.17)"),
        Both("cpu: cpuid 0: vendor"),
        Both("cpu: cpuid 1: the hypervisor bit is set"),
        Both("cpu: wrmsr/rdmsr FS_BASE"),
        Both("cpu: set_segment_base(FS)"),
        Both("cpu: set_segment_base(GS_KERNEL, GS_USER)"),
        Both("cpu: wrmsr GS_BASE, SHADOW_GS_BASE"),
        Both("cpu: rdmsr APIC_BASE: 0xfee00900"),
        Both("cpu: wrmsr APIC_BASE: fault #GP error code 0x0"),
        Both("cpu: rdmsr EFER 0xd01; writing it back is allowed"),
        Both("cpu: rdmsr LSTAR: fault #GP error code 0x0"),
        Both("cpu: fpu_taskswitch(1): CR0.TS reads 1"),
        Both("cpu: FPU use with TS set: fault #NM"),
        Both("cpu: after #NM, CR0.TS is clear and the FPU works"),
        Both("cpu: fpu_taskswitch(1) then (0): the FPU works"),
        Both("cpu: fpu_taskswitch(1) then clts: CR0.TS clear, the FPU works"),
        Both("cpu: in 0x40 without virtual IOPL: fault #GP error code 0x0"),
        Both("cpu: cli without virtual IOPL: fault #GP error code 0x0"),
        Both("cpu: sti without virtual IOPL: fault #GP error code 0x0"),
        Both("cpu: with architectural_iopl: in 0x40 (a port dom0 may not use) reads 0xff"),
        Both("cpu: with architectural_iopl: cli and sti run and leave the event mask alone"),
        Both("(saved mask 1); iret with the frame as delivered returns, events still masked"),
        Both("cpu: success"),
    ];
}

/// examples/timers.
pub mod timers {
    use super::Line::{self, Both};

    /// The periodic task's firings in its own order (every 7 ms), then the guest's own
    /// check; the one-shots (30, 10, 20 and 5 ms) anywhere ([`ONE_SHOTS`]): timers
    /// that a late wake-up finds due at once may run in any order (what libos
    /// promises: never early, each task's own sequence kept, deadline order among
    /// timers not due at once; the guest checks exactly that).
    pub const LINES: &[Line] = &[
        Both("timers: vCPU 0 up and running"),
        Both("timers: system time"),
        Both("timers: periodic #1 fired"),
        Both("timers: periodic #2 fired"),
        Both("timers: periodic #3 fired"),
        Both("timers: periodic #4 fired"),
        Both("timers: periodic #5 fired"),
        Both("timers: periodic #6 fired"),
        Both(OK),
    ];
    pub const ONE_SHOTS: &[&str] = &[
        "timers: sleep 5 ms fired",
        "timers: sleep 10 ms fired",
        "timers: sleep 20 ms fired",
        "timers: sleep 30 ms fired",
    ];
    pub const OK: &str =
        "timers: OK: 10 timers fired, none early, in deadline order except those due at once";
}

/// examples/spinner, beside examples/timers (scenario `spin`).
pub mod spinner {
    /// After the worker is done, the spinner is still running: in this order.
    pub const AFTER_THE_WORKER: &[&str] = &[
        "(shim) d2 (timers) shut down: poweroff",
        "(d1) spinner: heartbeat",
    ];
    pub const ANYWHERE: &[&str] = &[
        "(d1) spinner: spinning",
        "(d2) timers: OK: 10 timers fired, none early, in deadline order except those due at once",
    ];
}

/// examples/pingpong.
pub mod pingpong {
    use super::Line::{self, Both};

    /// `loopback rounds=10000`.
    pub const LOOPBACK: &[Line] = &[
        Both("pingpong: loopback: ports"),
        Both("pingpong: a masked event stayed pending and was delivered on unmask"),
        Both("is unbound again"),
        Both("pingpong: ping: port"),
        Both("pingpong: pong: bound port"),
        Both("said hello"),
        Both("pingpong: OK: loopback, 10000 rounds: ping sent 10000 received 10000, pong received 10000 sent 10000; no lost or duplicated event"),
    ];
    /// Two domUs, `ping peer=2` and `pong peer=1`, 10,000 rounds: in any order.
    pub const TWO_DOMAINS: &[&str] = &[
        "(d1) pingpong: OK: ping, 10000 rounds with domain 2; no lost or duplicated event",
        "(d2) pingpong: OK: pong",
        "(shim) d1 (pingpong) shut down: poweroff",
        "(shim) d2 (pingpong-1) shut down: poweroff",
    ];
    /// The same with `crash-after=500` on the pong side.
    pub const PEER_CRASHES: &[&str] = &[
        "(d2) pingpong: pong: crashing on purpose after 500 rounds",
        "(shim) d2 (pingpong-1) shut down: crash",
        "(d1) pingpong: ping: saw the port closed by domain 2 after 500 rounds",
        "(shim) d1 (pingpong) shut down: poweroff",
    ];
}

/// examples/ctl, the toolstack hypercalls.
pub mod ctl {
    use super::Line::{self, Both};

    /// As dom0 of a spinning domU (`spinner probe`).
    pub const WITH_A_DOMU: &[&str] = &[
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
    ];
    pub const WITH_A_DOMU_FAIL: &[&str] = &[
        "ctl: FAILED",
        "ALLOWED",
        "spinner: probe: FAILED",
        "fatal exception",
    ];
    /// The domU's probe, interleaved with dom0's lines.
    pub const DOMU_PROBE: &str = "(d1) spinner: probe: every toolstack call refused with -EPERM";
    /// Alone, on the shim and on Xen alike.
    pub const ALONE: &[Line] = &[
        Both("ctl: alone: checking the calls on d0 itself"),
        Both("ctl: alone: d0 is r-----"),
        Both("ctl: alone: getdomaininfo above d0: -ESRCH, of DOMID_SELF: -EINVAL"),
        Both("ctl: alone: pause, unpause, destroy of itself: -EINVAL"),
        Both("ctl: OK"),
    ];
}

/// Kernels built by others.
pub mod third_party {
    /// GRUB alone as dom0.
    pub const GRUB_ALONE: &[&str] = &[
        "(shim) d0: GRUB (xen-3.0)",
        "(shim) d0 (GRUB) crashed",
        super::shim::NO_DOMAINS_LEFT,
    ];
    /// Debian's Linux 6.1 PV kernel as dom0.
    pub const LINUX: &[&str] = &[
        "(shim) d0: linux (xen-3.0)",
        "mapping kernel into physical memory",
        "about to get started...",
        // Past vcpu_op (issue 4): Linux goes on to its debug registers.
        "(shim) d0: hypercall 9 (get_debugreg) not implemented: -ENOSYS",
    ];
    pub const LINUX_FAIL: &[&str] = &[
        "PANIC",
        "fault in the shim",
        "(shim) d0 (linux) crashed",
        "(vcpu_op) not implemented",
    ];
    /// GRUB as a domU beside examples/dom0, on its console ring.
    pub const GRUB_DOMU: &[&str] = &[
        super::dom0::UP,
        "dom0: d1 (grub-x86_64-xen) introduced, console connected, unpaused",
        "grub-x86_64-xen| .[30m.[47mWelcome to GRUB!",
        "GNU GRUB  version 2.06",
        "grub-x86_64-xen| grub> ",
        "grub-x86_64-xen| typed-into-grub",
    ];
}

/// examples/dom0 (xenstored, the console back-end) and its domUs.
pub mod dom0 {
    /// Lines that fail any dom0 scenario at once.
    pub const FAIL: &[&str] = &[
        "FAILED",
        "PANIC",
        "fault in the shim",
        "(shim) d0 (dom0) crashed",
    ];
    /// Once it is serving.
    pub const UP: &str = "dom0: xenstored and the console back-end are up";
    /// Its last line, before the machine ends.
    pub const DONE: &str = "dom0: no domU left: powering off";
    /// dom0 and hello (`bundles/hello.toml`).
    pub const HELLO: &[&str] = &[
        UP,
        "dom0: d1 (hello) introduced, console connected, unpaused",
        "hello| Hello from hello, a Xen PV guest on libos!",
        "hello|   flags: 0x0 (privileged: false, initial domain: false)",
        "dom0: d1 (hello) is gone: released",
        DONE,
    ];
    pub const HELLO_FIRST_LINE: &str = "hello| Hello from hello";
    /// dom0 with `poweroff-after=1` and spinner, which never runs the executor.
    pub const SHUTDOWN_BUSY: &[&str] = &[
        UP,
        "spinner| spinner: spinning",
        "dom0: asking d1 (spinner) to power off",
        "spinner| control: poweroff requested by the toolstack",
        "(shim) d1 (spinner) shut down: poweroff",
        DONE,
    ];
    /// dom0 with `mem-set` (half, then all of spinner's 16 MiB) and `poweroff-after`.
    pub const BALLOON: &[&str] = &[
        UP,
        "dom0: d1 memory/target set to 8192 KiB",
        "spinner| balloon: target 8192 KiB: 16384 -> 8192 KiB (2048 pages given back; the hypervisor counts 2048 pages)",
        "dom0: d1 memory/target set to 16384 KiB",
        "spinner| balloon: target 16384 KiB: 8192 -> 16384 KiB (0 pages given back; the hypervisor counts 4096 pages)",
        "dom0: asking d1 (spinner) to power off",
        "(shim) d1 (spinner) shut down: poweroff",
        DONE,
    ];
    /// dom0 and pingpong's ping (d1) and pong (d2), pong not told the port.
    pub const PINGPONG: &[&str] = &[
        UP,
        "pingpong| pingpong: ping: port 3 allocated for domain 2",
        "pingpong| pingpong: ping: port 3 published in data/pingpong-port",
        "pingpong| pingpong: OK: ping, 2000 rounds with domain 2; no lost or duplicated event",
        DONE,
    ];
    pub const PINGPONG_ANYWHERE: &[&str] = &[
        "pingpong-1| pingpong: pong: bound port 3 of domain 1",
        "pingpong-1| pingpong: OK: pong, 2000 rounds with domain 1; no lost or duplicated event",
    ];
    /// `bundles/nic.toml`: the NIC on QEMU's user network, self-tested (slirp's
    /// gateway has a fixed MAC, 52:55 then its address; a full-size frame each way;
    /// a burst through every buffer many times), then dom0 serves as usual.
    pub const NIC: &[&str] = &[
        "dom0: nic: virtio-net 52:54:00:12:34:56, 128 rx buffers",
        "dom0: nic-selftest: 10.0.2.2 is at 52:55:0a:00:02:02",
        "dom0: nic-selftest: DHCP offer 10.0.2.15 from 10.0.2.2",
        "dom0: nic-selftest: 10.0.2.2 echoed 1472 bytes (1514-byte frames)",
        "dom0: nic-selftest: burst of 2000 ARP requests: 2000 replies",
        UP,
        "dom0: d1 (hello) introduced, console connected, unpaused",
        DONE,
    ];
    /// Two xsdemo domUs on xenstore: in any order.
    pub const XENSTORE: &[&str] = &[
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
        DONE,
    ];
    /// Serial input to two echoing domUs, in order.
    pub const CONSOLE_INPUT: &[&str] = &[
        "xsdemo| xsdemo: got \"hello one\"",
        "[console input now goes to d2",
        "xsdemo-1| xsdemo: got \"quit\"",
        "xsdemo| xsdemo: got \"quit\"",
        DONE,
    ];
    /// What a hostile domU's well-behaved neighbour (d2) and the shim must show, after
    /// the attack's own lines, in any order.
    pub const SURVIVED_AN_ATTACK: &[&str] = &[
        "xsdemo| xsdemo: OK",
        "dom0: d2 (xsdemo) is gone: released",
        "(shim) d1 (hostile) shut down",
    ];
}
