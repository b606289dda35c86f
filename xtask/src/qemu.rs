//! QEMU: the command lines (shim on microvm with its virtio-blk disks, upstream Xen on
//! q35), running with a
//! deadline while reading the serial console line by line, and the exit-status
//! convention between the shim and xtask ([`outcome`]). Everything that starts QEMU
//! goes through here so the flags live in one place.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::deps::QEMU;
use crate::disks::{Access, Disk};

/// QEMU accelerator. TCG by default: the nested KVM of our machines does not deliver
/// ring-3 `syscall` (DESIGN.md, pitfalls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The shim's command line: its own options, then ` -- ` and the guest's command line
/// (the shim passes what follows `--` to the initial domain in `start_info.cmd_line`).
pub fn shim_cmdline(shim_opts: &str, guest: &str) -> String {
    match (shim_opts.is_empty(), guest.is_empty()) {
        (_, true) => shim_opts.to_owned(),
        (true, false) => format!("-- {guest}"),
        (false, false) => format!("{shim_opts} -- {guest}"),
    }
}

/// Deterministic TSC: one tick per guest instruction, no sleeping on the host clock
/// (`cargo xtask bench` counts instructions with it).
pub const ICOUNT: &[&str] = &["-icount", "shift=0,sleep=off"];

/// One QEMU machine booting the shim or upstream Xen. Every QEMU command line of xtask
/// (`run`, `test`'s scenarios, `bench`) comes from [`Machine::command`], so the flags
/// live in one place; what differs between users is an option here (memory, accelerator,
/// [`ICOUNT`]).
#[derive(Clone, Debug)]
pub struct Machine {
    kernel: Kernel,
    accel: Accel,
    memory: String,
    icount: bool,
    disks: Vec<Disk>,
    nic: Option<Nic>,
}

/// The MAC of the machine's NIC (QEMU's own default, fixed so runs compare).
pub const NIC_MAC: &str = "52:54:00:12:34:56";

/// The machine's NIC (dom0's): a virtio-net device on one of microvm's virtio-mmio
/// transports, netdev `nic0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub backend: NicBackend,
    /// Record its traffic to this pcap file (QEMU's `filter-dump`).
    pub pcap: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicBackend {
    /// QEMU's user-mode network (slirp: gateway 10.0.2.2, DHCP handing out 10.0.2.15),
    /// with host ports forwarded to the guest.
    User { hostfwd: Vec<HostFwd> },
    /// A host tap device, which must exist (no scripts run).
    Tap { ifname: String },
}

/// A TCP port of the host's loopback forwarded to `guest:guest_port` (user network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwd {
    pub host_port: u16,
    pub guest: std::net::Ipv4Addr,
    pub guest_port: u16,
}

impl fmt::Display for NicBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicBackend::User { hostfwd } => {
                write!(f, "user")?;
                for h in hostfwd {
                    write!(
                        f,
                        ", 127.0.0.1:{} -> {}:{}",
                        h.host_port, h.guest, h.guest_port
                    )?;
                }
                Ok(())
            }
            NicBackend::Tap { ifname } => write!(f, "tap:{ifname}"),
        }
    }
}

impl Nic {
    /// A manifest's `nic`: `user` or `tap:NAME`.
    pub fn parse(text: &str) -> Result<Nic, String> {
        let backend = match text.split_once(':') {
            None if text == "user" => NicBackend::User {
                hostfwd: Vec::new(),
            },
            Some(("tap", name)) => {
                // QEMU's option syntax ends a value at a comma; Linux's interface names
                // are at most 15 bytes.
                let ok = !name.is_empty()
                    && name.len() <= 15
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(format!(
                        "nic {text:?}: the tap's name must be 1 to 15 letters, digits, `-`, `_` or `.`"
                    ));
                }
                NicBackend::Tap {
                    ifname: name.into(),
                }
            }
            _ => {
                return Err(format!(
                    "nic {text:?}: expected \"user\" (QEMU's user-mode network) or \"tap:NAME\" (a host tap device)"
                ))
            }
        };
        Ok(Nic {
            backend,
            pcap: None,
        })
    }

    /// Its `-netdev` option.
    fn netdev(&self) -> String {
        match &self.backend {
            NicBackend::User { hostfwd } => {
                let mut opt = String::from("user,id=nic0");
                for f in hostfwd {
                    opt.push_str(&format!(
                        ",hostfwd=tcp:127.0.0.1:{}-{}:{}",
                        f.host_port, f.guest, f.guest_port
                    ));
                }
                opt
            }
            NicBackend::Tap { ifname } => {
                format!("tap,id=nic0,ifname={ifname},script=no,downscript=no")
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Kernel {
    Shim {
        shim: PathBuf,
        module: PathBuf,
        cmdline: String,
    },
    Xen {
        xen: PathBuf,
        dom0: PathBuf,
        cmdline: String,
    },
}

impl Machine {
    /// The shim (PVH entry) on microvm with `module` (a guest's ELF or a bundle) as its
    /// boot module and `cmdline` as its command line ([`shim_cmdline`]); 256 MiB, TCG.
    pub fn shim(
        shim: impl Into<PathBuf>,
        module: impl Into<PathBuf>,
        cmdline: impl Into<String>,
    ) -> Machine {
        Machine {
            kernel: Kernel::Shim {
                shim: shim.into(),
                module: module.into(),
                cmdline: cmdline.into(),
            },
            accel: Accel::Tcg,
            memory: "256M".into(),
            icount: false,
            disks: Vec::new(),
            nic: None,
        }
    }

    /// Upstream Xen (Multiboot) on q35 with `dom0` as dom0, given `cmdline` as its
    /// command line; 512 MiB, TCG.
    pub fn xen(
        xen: impl Into<PathBuf>,
        dom0: impl Into<PathBuf>,
        cmdline: impl Into<String>,
    ) -> Machine {
        Machine {
            kernel: Kernel::Xen {
                xen: xen.into(),
                dom0: dom0.into(),
                cmdline: cmdline.into(),
            },
            accel: Accel::Tcg,
            memory: "512M".into(),
            icount: false,
            disks: Vec::new(),
            nic: None,
        }
    }

    pub fn accel(mut self, accel: Accel) -> Machine {
        self.accel = accel;
        self
    }

    /// Machine memory, in QEMU's `-m` syntax.
    pub fn memory(mut self, memory: impl Into<String>) -> Machine {
        self.memory = memory.into();
        self
    }

    /// The shim's disks (a manifest's, [`crate::bundle::Manifest::disks`]), in order:
    /// each a virtio-blk device on one of microvm's virtio-mmio transports, its serial
    /// naming it for dom0. Upstream Xen's q35 machine boots without them.
    pub fn disks(mut self, disks: Vec<Disk>) -> Machine {
        self.disks = disks;
        self
    }

    /// The shim's NIC (a manifest's dom0's, [`crate::bundle::Manifest::nic`]), if any.
    /// Upstream Xen's q35 machine boots without it.
    pub fn nic(mut self, nic: Option<Nic>) -> Machine {
        self.nic = nic;
        self
    }

    /// Runs under [`ICOUNT`]: TSC ticks count guest instructions.
    pub fn icount(mut self) -> Machine {
        self.icount = true;
        self
    }

    /// The QEMU command.
    ///
    /// The shim: `-nodefaults` keeps microvm from adding devices we do not use; the
    /// serial port we need is still created by `-serial stdio`. `isa-debug-exit` lets
    /// the shim end QEMU with a status ([`outcome`]). Disks: `-drive if=none` plus a
    /// `virtio-blk-device` (microvm's transports are virtio-mmio, not PCI), with the
    /// serial dom0 knows the disk by; `discard=unmap`: a discard punches a hole in the
    /// image; `cache=writeback`: writes may sit in the host's
    /// page cache, and a flush from the guest (which blkback passes on before it
    /// acknowledges one) makes QEMU sync the image. microvm's virtio-mmio transports
    /// speak the legacy interface by default; `force-legacy=false` makes them virtio
    /// 1.x (modern) transports. The NIC: `-netdev` `nic0` ([`NicBackend`]; forwarded
    /// host ports bound to 127.0.0.1 only) and a `virtio-net-device` with [`NIC_MAC`],
    /// after the disks; with a pcap file, a `filter-dump` on `nic0`.
    ///
    /// Xen: `-cpu max,-smap,-rdtscp`: QEMU 7.2's TCG trips SMAP on a PV kernel's
    /// `iretq`, and its SVM emulation fails on RDTSCP (DESIGN.md, pitfalls). Xen does
    /// not end QEMU when dom0 halts; callers stop it once they have seen what they wait
    /// for. dom0's command line follows the module's file name: Multiboot passes that
    /// string, and Xen hands it to dom0 in `start_info.cmd_line`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(QEMU);
        let machine = match self.kernel {
            Kernel::Shim { .. } => "microvm",
            Kernel::Xen { .. } => "q35",
        };
        cmd.args(["-machine", machine, "-accel", self.accel.as_str()]);
        if let Kernel::Xen { .. } = self.kernel {
            cmd.args(["-cpu", "max,-smap,-rdtscp"]);
        }
        cmd.args(["-m", &self.memory]);
        if let Kernel::Shim { .. } = self.kernel {
            cmd.arg("-nodefaults");
        }
        cmd.args(["-no-reboot", "-nographic"]);
        cmd.args(["-serial", "stdio", "-monitor", "none", "-display", "none"]);
        match &self.kernel {
            Kernel::Shim {
                shim,
                module,
                cmdline,
            } => {
                cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
                cmd.arg("-kernel").arg(shim);
                cmd.arg("-initrd").arg(module);
                cmd.args(["-append", cmdline]);
                if !self.disks.is_empty() || self.nic.is_some() {
                    cmd.args(["-global", "virtio-mmio.force-legacy=false"]);
                }
                for d in &self.disks {
                    cmd.arg("-drive").arg(drive(d));
                    cmd.arg("-device")
                        .arg(format!("virtio-blk-device,drive={0},serial={0}", d.serial));
                }
                if let Some(nic) = &self.nic {
                    cmd.args(["-netdev", &nic.netdev()]);
                    cmd.arg("-device")
                        .arg(format!("virtio-net-device,netdev=nic0,mac={NIC_MAC}"));
                    if let Some(pcap) = &nic.pcap {
                        // Commas doubled, as in a drive's path.
                        let file = pcap.to_string_lossy().replace(',', ",,");
                        cmd.arg("-object")
                            .arg(format!("filter-dump,id=f0,netdev=nic0,file={file}"));
                    }
                }
            }
            Kernel::Xen { xen, dom0, cmdline } => {
                cmd.arg("-kernel").arg(xen);
                let mut module = dom0.as_os_str().to_owned();
                if !cmdline.is_empty() {
                    module.push(" ");
                    module.push(cmdline);
                }
                cmd.arg("-initrd").arg(module);
                cmd.args(["-append", "console=com1 dom0_mem=64M"]);
            }
        }
        if self.icount {
            cmd.args(ICOUNT);
        }
        cmd
    }
}

/// A disk's `-drive` option. The path's commas are doubled: QEMU's option syntax
/// would read one as the end of `file=` (xl's `target=` may hold commas). The path
/// came from a manifest's text, so it is UTF-8.
fn drive(d: &Disk) -> String {
    let path = d.spec.target.to_string_lossy().replace(',', ",,");
    let mut opt = format!(
        "file={path},format=raw,if=none,id={},cache=writeback,discard=unmap",
        d.serial
    );
    if d.spec.access == Access::ReadOnly {
        opt.push_str(",read-only=on");
    }
    opt
}

/// How a QEMU run ended, by the shim's convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The initial domain powered off (success).
    PowerOff,
    /// The initial domain crashed.
    Crash,
    /// The shim itself panicked.
    ShimPanic,
    /// The initial domain asked for a reboot.
    Reboot,
    /// Anything else: QEMU's own status (0/1), or killed by a signal (`None`).
    Other(Option<i32>),
}

/// Maps QEMU's exit status to an [`Outcome`], by the shim's own convention
/// (`hypervisor_shim::exit::ShimExit`). The shim ends QEMU by writing a value to `isa-debug-exit` (port 0xf4); QEMU then
/// exits with `(value << 1) | 1`:
///
/// | shim writes | QEMU status | meaning                            |
/// |-------------|-------------|------------------------------------|
/// | `0x10`      | 33          | initial domain powered off: success |
/// | `0x11`      | 35          | initial domain crashed             |
/// | `0x12`      | 37          | the shim panicked                  |
/// | `0x13`      | 39          | initial domain asked for a reboot  |
///
/// QEMU's own 0 (e.g. `-no-reboot` on a triple fault) or 1 (error) are failures.
pub fn outcome(status: ExitStatus) -> Outcome {
    use hypervisor_shim::exit::ShimExit;
    match status.code().and_then(ShimExit::from_qemu_status) {
        Some(ShimExit::PoweredOff) => Outcome::PowerOff,
        Some(ShimExit::Crashed) => Outcome::Crash,
        Some(ShimExit::ShimPanic) => Outcome::ShimPanic,
        Some(ShimExit::Reboot) => Outcome::Reboot,
        None => Outcome::Other(status.code()),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::PowerOff => write!(f, "guest powered off (QEMU status 33)"),
            Outcome::Crash => write!(f, "guest crashed (QEMU status 35)"),
            Outcome::ShimPanic => write!(f, "the shim panicked (QEMU status 37)"),
            Outcome::Reboot => write!(f, "guest asked for a reboot (QEMU status 39)"),
            Outcome::Other(Some(c)) => write!(f, "QEMU exited with unexpected status {c}"),
            Outcome::Other(None) => write!(f, "QEMU was killed by a signal"),
        }
    }
}

/// The command as a shell-like line, for progress output.
pub fn display_command(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
            format!("{s:?}")
        } else {
            s.into_owned()
        }
    };
    // The program by name only: `cargo`, not the toolchain's full path.
    let program = Path::new(cmd.get_program());
    std::iter::once(quote(program.file_name().unwrap_or(program.as_os_str())))
        .chain(cmd.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

fn spawn_error(cmd: &Command) -> String {
    format!(
        "starting {} (is QEMU installed?)",
        cmd.get_program().to_string_lossy()
    )
}

/// Runs QEMU with the terminal's stdio (serial console on stdout). Returns its exit
/// status, or `None` if it was killed after `timeout`.
pub fn run_interactive(mut cmd: Command, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
    let mut child = cmd.spawn().with_context(|| spawn_error(&cmd))?;
    let Some(timeout) = timeout else {
        return Ok(Some(child.wait().context("waiting for QEMU")?));
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a line handler tells [`run_captured`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Type these bytes on the serial console (QEMU's stdin), then go on.
    Type(&'static [u8]),
    /// Kill QEMU now (we have seen what we waited for, or enough to fail).
    Stop,
}

/// One line of serial output (or QEMU's stderr), with its arrival time.
pub struct Line {
    pub at: Duration,
    pub text: String,
}

/// The record of a captured run.
pub struct Captured {
    pub lines: Vec<Line>,
    /// Exit status if QEMU exited by itself.
    pub status: Option<ExitStatus>,
    /// The handler asked to stop and QEMU was killed.
    pub stopped: bool,
    /// The deadline passed and QEMU was killed.
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Captured {
    /// Time from QEMU start to the first line containing `pattern`.
    pub fn time_to_line(&self, pattern: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|l| l.text.contains(pattern))
            .map(|l| l.at)
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &str> {
        self.lines[self.lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.text.as_str())
    }
}

/// Runs QEMU with stdout and stderr piped, handing each line to `on_line` as it
/// arrives (optionally echoing it), until QEMU exits, `on_line` says stop, or
/// `timeout` passes; QEMU is killed in the last two cases.
pub fn run_captured(
    mut cmd: Command,
    timeout: Duration,
    echo: bool,
    mut on_line: impl FnMut(&str) -> Control,
) -> Result<Captured> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| spawn_error(&cmd))?;
    let mut stdin = child.stdin.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    // Not joined: they end when QEMU's pipes close.
    spawn_reader(child.stdout.take().expect("piped"), tx.clone(), start);
    spawn_reader(child.stderr.take().expect("piped"), tx, start);

    let deadline = start + timeout;
    let mut captured = Captured {
        lines: Vec::new(),
        status: None,
        stopped: false,
        timed_out: false,
        elapsed: Duration::ZERO,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if echo {
                    println!("    | {}", line.text);
                }
                let control = on_line(&line.text);
                captured.lines.push(line);
                match control {
                    Control::Continue => {}
                    Control::Type(bytes) => {
                        // QEMU gone: the run's end shows it.
                        let _ = stdin.write_all(bytes).and_then(|()| stdin.flush());
                    }
                    Control::Stop => {
                        captured.stopped = true;
                        kill(&mut child);
                        break;
                    }
                }
            }
            // Both pipes closed: QEMU is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                captured.timed_out = true;
                kill(&mut child);
                break;
            }
        }
    }
    if !captured.stopped && !captured.timed_out {
        captured.status = Some(child.wait().context("waiting for QEMU")?);
    }
    captured.elapsed = start.elapsed();
    Ok(captured)
}

fn spawn_reader(pipe: impl Read + Send + 'static, tx: mpsc::Sender<Line>, start: Instant) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    // Serial output: may hold CRs, escape sequences or invalid UTF-8.
                    let text = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .replace('\r', "");
                    let line = Line {
                        at: start.elapsed(),
                        text,
                    };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn outcome_follows_the_shim_convention() {
        let status = |code: i32| sh(&format!("exit {code}")).status().unwrap();
        assert_eq!(outcome(status(33)), Outcome::PowerOff);
        assert_eq!(outcome(status(35)), Outcome::Crash);
        assert_eq!(outcome(status(37)), Outcome::ShimPanic);
        assert_eq!(outcome(status(39)), Outcome::Reboot);
        assert_eq!(outcome(status(0)), Outcome::Other(Some(0)));
        assert_eq!(outcome(status(1)), Outcome::Other(Some(1)));
    }

    #[test]
    fn cmdline_separates_shim_and_guest() {
        assert_eq!(shim_cmdline("", ""), "");
        assert_eq!(shim_cmdline("loglvl=all", ""), "loglvl=all");
        assert_eq!(shim_cmdline("", "a b"), "-- a b");
        assert_eq!(shim_cmdline("loglvl=all", "a b"), "loglvl=all -- a b");
    }

    fn args(m: &Machine) -> Vec<String> {
        m.command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The command lines as they were before the builder (scenarios and `run`).
    #[test]
    fn machines_build_the_known_command_lines() {
        let shim = Machine::shim("/s", "/g", "-- x").memory("512M");
        assert_eq!(
            args(&shim).join(" "),
            "-machine microvm -accel tcg -m 512M -nodefaults -no-reboot -nographic \
             -serial stdio -monitor none -display none \
             -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel /s -initrd /g -append -- x"
        );
        let xen = Machine::xen("/x", "/g", "a b").accel(Accel::Kvm);
        assert_eq!(
            args(&xen).join(" "),
            "-machine q35 -accel kvm -cpu max,-smap,-rdtscp -m 512M -no-reboot -nographic \
             -serial stdio -monitor none -display none \
             -kernel /x -initrd /g a b -append console=com1 dom0_mem=64M"
        );
        let plain = args(&Machine::xen("/x", "/g", ""));
        assert!(plain.windows(2).any(|w| w == ["-initrd", "/g"]));
        assert_eq!(args(&Machine::shim("/s", "/g", ""))[5], "256M");
        // No disk, no virtio: the transports stay as microvm makes them.
        assert!(!args(&shim).iter().any(|a| a.contains("virtio")));
    }

    fn disk(serial: &str, target: &str, access: Access) -> Disk {
        Disk {
            domid: 1,
            serial: serial.into(),
            spec: crate::disks::DiskSpec {
                target: target.into(),
                vdev: "xvda".into(),
                devid: 51712,
                access,
                size: None,
            },
        }
    }

    /// Disks follow the rest in order, one drive and one virtio-blk device each, on
    /// modern transports; a read-only disk is a read-only drive; commas in the path
    /// are escaped for QEMU's option parser.
    #[test]
    fn disks_are_virtio_blk_drives_in_order() {
        let m = Machine::shim("/s", "/g", "").disks(vec![
            disk("vbd0", "/img/kv.img", Access::ReadWrite),
            disk("vbd1", "/img/a,b.img", Access::ReadOnly),
        ]);
        let all = args(&m);
        let plain = args(&Machine::shim("/s", "/g", ""));
        assert_eq!(all[..plain.len()], plain[..]);
        assert_eq!(
            all[plain.len()..].join(" "),
            "-global virtio-mmio.force-legacy=false \
             -drive file=/img/kv.img,format=raw,if=none,id=vbd0,cache=writeback,discard=unmap \
             -device virtio-blk-device,drive=vbd0,serial=vbd0 \
             -drive file=/img/a,,b.img,format=raw,if=none,id=vbd1,cache=writeback,discard=unmap,read-only=on \
             -device virtio-blk-device,drive=vbd1,serial=vbd1"
        );
        // -icount still comes last.
        let counted = args(&m.clone().icount());
        assert_eq!(counted[all.len()..], *ICOUNT);
    }

    /// The NIC follows the disks: a netdev `nic0` and a virtio-net device with the fixed
    /// MAC, on modern transports; forwarded ports listen on 127.0.0.1 only; a pcap file
    /// is a filter-dump on `nic0`.
    #[test]
    fn nics_are_virtio_net_devices_after_the_disks() {
        let plain = args(&Machine::shim("/s", "/g", ""));
        let with =
            |nic: Nic| args(&Machine::shim("/s", "/g", "").nic(Some(nic)))[plain.len()..].join(" ");
        let user = Nic::parse("user").unwrap();
        assert_eq!(
            with(user.clone()),
            "-global virtio-mmio.force-legacy=false -netdev user,id=nic0 \
             -device virtio-net-device,netdev=nic0,mac=52:54:00:12:34:56"
        );
        let fwd = Nic {
            backend: NicBackend::User {
                hostfwd: vec![
                    HostFwd {
                        host_port: 8080,
                        guest: [10, 0, 2, 15].into(),
                        guest_port: 80,
                    },
                    HostFwd {
                        host_port: 2222,
                        guest: [10, 0, 2, 16].into(),
                        guest_port: 22,
                    },
                ],
            },
            pcap: Some("/tmp/a,b.pcap".into()),
        };
        assert_eq!(
            with(fwd),
            "-global virtio-mmio.force-legacy=false \
             -netdev user,id=nic0,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=tcp:127.0.0.1:2222-10.0.2.16:22 \
             -device virtio-net-device,netdev=nic0,mac=52:54:00:12:34:56 \
             -object filter-dump,id=f0,netdev=nic0,file=/tmp/a,,b.pcap"
        );
        assert_eq!(
            with(Nic::parse("tap:tap0").unwrap()),
            "-global virtio-mmio.force-legacy=false \
             -netdev tap,id=nic0,ifname=tap0,script=no,downscript=no \
             -device virtio-net-device,netdev=nic0,mac=52:54:00:12:34:56"
        );
        // With disks: one -global, the disks first.
        let both = args(
            &Machine::shim("/s", "/g", "")
                .disks(vec![disk("vbd0", "/img/kv.img", Access::ReadWrite)])
                .nic(Some(user)),
        );
        let rest = both[plain.len()..].join(" ");
        assert_eq!(rest.matches("-global").count(), 1);
        assert!(rest.find("virtio-blk-device") < rest.find("virtio-net-device"));
    }

    #[test]
    fn nic_values_are_user_or_a_tap() {
        assert_eq!(
            Nic::parse("tap:br-tap.0").unwrap().backend,
            NicBackend::Tap {
                ifname: "br-tap.0".into()
            }
        );
        for bad in [
            "",
            "User",
            "tap",
            "tap:",
            "tap:a,b",
            "tap:0123456789abcdef",
            "bridge:br0",
            "user:x",
        ] {
            let e = Nic::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("nic {bad:?}: ")), "{e}");
        }
        assert!(Nic::parse("slirp")
            .unwrap_err()
            .contains("expected \"user\""));
        assert!(Nic::parse("tap:a,b")
            .unwrap_err()
            .contains("1 to 15 letters"));
    }

    /// What `bench` adds: -icount, and nothing else.
    #[test]
    fn icount_is_an_option_of_the_one_builder() {
        for m in [Machine::shim("/s", "/g", ""), Machine::xen("/x", "/g", "")] {
            let plain = args(&m);
            let counted = args(&m.clone().icount());
            assert_eq!(counted[..plain.len()], plain[..]);
            assert_eq!(counted[plain.len()..], *ICOUNT);
            assert!(!plain.iter().any(|a| a == "-icount"));
        }
    }

    #[test]
    fn captured_run_reads_both_pipes_until_exit() {
        let c = run_captured(
            sh("echo out; echo err >&2; exit 35"),
            Duration::from_secs(10),
            false,
            |_| Control::Continue,
        )
        .unwrap();
        let mut texts: Vec<_> = c.lines.iter().map(|l| l.text.as_str()).collect();
        texts.sort();
        assert_eq!(texts, ["err", "out"]);
        assert_eq!(c.status.map(outcome), Some(Outcome::Crash));
        assert!(!c.timed_out && !c.stopped);
    }

    #[test]
    fn captured_run_is_killed_at_the_deadline() {
        let c = run_captured(
            sh("echo one; exec sleep 30"),
            Duration::from_millis(300),
            false,
            |_| Control::Continue,
        )
        .unwrap();
        assert!(c.timed_out);
        assert!(c.status.is_none());
        assert!(c.elapsed < Duration::from_secs(10));
        assert!(c.time_to_line("one").is_some());
    }

    #[test]
    fn captured_run_stops_when_asked() {
        let c = run_captured(
            sh("echo a; echo b; exec sleep 30"),
            Duration::from_secs(10),
            false,
            |l| {
                if l == "b" {
                    Control::Stop
                } else {
                    Control::Continue
                }
            },
        )
        .unwrap();
        assert!(c.stopped && !c.timed_out);
        assert!(c.elapsed < Duration::from_secs(10));
        assert_eq!(c.tail(1).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn interactive_run_times_out() {
        let status =
            run_interactive(sh("exec sleep 30"), Some(Duration::from_millis(200))).unwrap();
        assert!(status.is_none());
        let status = run_interactive(sh("exit 33"), Some(Duration::from_secs(10))).unwrap();
        assert_eq!(status.map(outcome), Some(Outcome::PowerOff));
    }
}
