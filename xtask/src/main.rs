//! `cargo xtask`: the one entry point for building, running and testing the stack.
//!
//! The bare-metal images need a target, a linker set-up and QEMU command lines that
//! nobody should have to remember; tests need QEMU scenarios that plain `cargo test`
//! cannot run. This binary is a small clap dispatcher; each concern has its module:
//!
//! * [`deps`]: installs what is missing (QEMU, the Rust target, libclang, Xen headers);
//! * [`images`]: builds the shim and the guest images into `target/images/`;
//! * [`bundle`]: domain bundles, several guests in one boot module, from a manifest;
//! * [`disks`]: a manifest's virtual disks (xl's disk specs) and their image files;
//! * [`qemu`]: QEMU command lines, running with a deadline, the exit-status convention;
//! * [`scenarios`]: the QEMU scenarios of `cargo xtask test`;
//! * [`xen`]: fetches upstream Xen 4.17, the reference our guests must also boot on;
//! * [`bindgen`]: regenerates and checks `xen-sys/src/bindings.rs`;
//! * [`fuzz`]: builds and runs the libFuzzer targets of `fuzz/`;
//! * [`test`]: the `cargo xtask test` sequence and its summary.

mod bench;
mod bindgen;
mod bundle;
mod chart;
mod debian;
mod deps;
mod disks;
mod fio_guest;
mod fuzz;
mod grub;
mod images;
mod initramfs;
mod lighttpd_guest;
mod linux;
mod qemu;
mod ring_bench;
mod scenarios;
mod test;
mod vifs;
mod xen;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use qemu::{Accel, Outcome};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test the Xen-compatible PV stack",
    after_help = "Start with `cargo xtask run` (boots dom0 and a hello domU) and `cargo xtask test`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the shim and every guest image (examples/*) into target/images/.
    Build,
    /// Boot the shim with a guest, or several as a domain bundle, in QEMU; serial
    /// console on stdout.
    ///
    /// Exit status: 0 if the guest powered off, 1 if it crashed, 2 if the shim
    /// panicked, 3 if the guest asked for a reboot, 4 for anything else (timeout,
    /// QEMU error).
    Run(RunArgs),
    /// Pack several guests into one boot module (a domain bundle) from a manifest.
    ///
    /// The manifest (TOML) lists `[[domain]]` tables with `name`, `image` (an example
    /// name, or a path to a PV ELF containing a `/`, relative to the manifest),
    /// `memory` ("16M", "1G" or MiB; default 16M, dom0 64M), `cmdline`, `role`
    /// ("dom0" or "domU", the default), `backends` and `disk` (a domU's xl.cfg disk
    /// specs, e.g. "vdev=xvda,size=64M,target=images/kv.img"), `nic` (dom0's: "user"
    /// or "tap:NAME"). See bundles/hello3.toml.
    Bundle {
        /// The manifest.
        manifest: PathBuf,
        /// Where to write the bundle (default: target/images/<manifest name>.bundle).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Run rustfmt, clippy, host tests, the bindings check, a short run of each fuzz
    /// target and the QEMU scenarios.
    Test(TestArgs),
    /// Measure boot, domain build, hypercall costs and footprint beside upstream Xen
    /// 4.17; print the table and write it as JSON under target/bench/.
    Bench {
        /// Only the benchmark groups whose name contains NAME (boot, build, hypercall,
        /// ring, footprint, io).
        name: Option<String>,
    },
    /// Fuzz the parsers of guest- and user-supplied bytes (fuzz/, libFuzzer via
    /// cargo-fuzz, installed if missing), one target at a time on one core.
    ///
    /// New corpus entries stay in target/fuzz/corpus/<TARGET>/; a failing input is
    /// written to fuzz/artifacts/<TARGET>/ (once fixed, move it to
    /// fuzz/regressions/<TARGET>/, which `cargo xtask test` replays).
    Fuzz {
        /// Only this target (bundle, elf, bzimage, xs_wire, xenstored, xs_client, byte_ring, blkif, blkfront, kvlog, hypercalls).
        target: Option<String>,
        /// Seconds to fuzz each target.
        #[arg(long, value_name = "S", default_value_t = 60)]
        time: u64,
    },
    /// Regenerate xen-sys/src/bindings.rs from the Xen public headers.
    Bindgen {
        /// Only check that the checked-in file matches a fresh generation.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args)]
#[command(after_help = "\
Several guests boot together as a domain bundle: `cargo xtask run hello hello hello`
boots three domains, the first as dom0 (memory --dom0-mem, default 64M), the others as
domUs of 16M, named hello, hello-1, hello-2 (domain ids 0, 1, 2). A guest may carry its
own command line: `cargo xtask run hello 'hello:loglevel=3'`. One guest boots alone,
without a bundle, as a bare ELF. For names, memory and roles of your choice, write a
manifest (see `cargo xtask bundle --help`) and boot it with --manifest.")]
struct RunArgs {
    /// The guests to boot, each `IMAGE[:CMDLINE]`: IMAGE is an example under examples/
    /// or a path to a PV ELF (containing a `/`); several guests make a bundle, the first
    /// being dom0.
    /// Without any, the default appliance boots: bundles/default.toml (dom0 running
    /// xenstored, the console back-end and netback with its bridge to QEMU's user
    /// network, and the httpd domU, reachable at http://127.0.0.1:8080/).
    #[arg(value_name = "GUEST", conflicts_with_all = ["kernel", "manifest"])]
    guests: Vec<String>,
    /// Boot this PV kernel (an ELF, or a Linux bzImage) as the only, privileged domain
    /// instead of an example.
    #[arg(long, value_name = "PATH", conflicts_with = "manifest")]
    kernel: Option<PathBuf>,
    /// Boot the domains of this bundle manifest (see `cargo xtask bundle --help`).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// QEMU accelerator (TCG works everywhere; KVM only on real hosts).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Machine memory, in QEMU's `-m` syntax (default 256M, more if a bundle's domains
    /// need it).
    #[arg(long)]
    memory: Option<String>,
    /// Kill QEMU after this many seconds (default: no limit).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Memory of the domain, as the shim's (and Xen's) `dom0_mem=` option (e.g. 512M);
    /// with several guests, the memory of the first (dom0).
    #[arg(long, value_name = "SIZE", conflicts_with = "manifest")]
    dom0_mem: Option<String>,
    /// Record the traffic of the manifest's NIC (dom0's `nic`) to this pcap file
    /// (QEMU's filter-dump; read it with tcpdump -r or Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// With --pcap: dom0 also copies this domU's vif traffic to the NIC, tagged with
    /// VLAN 100 + its domain id (Wireshark: `vlan.id == 101` for the first domU).
    #[arg(long, value_name = "DOMAIN", requires = "pcap")]
    mirror: Option<String>,
    /// The guest's command line (after `--`); with several guests, the first's.
    #[arg(last = true, value_name = "GUEST_ARGS", conflicts_with = "manifest")]
    guest_args: Vec<String>,
}

#[derive(Args)]
struct TestArgs {
    /// Run only the QEMU scenarios and fuzz steps (`fuzz <target>`) whose name
    /// contains NAME, and skip the other steps.
    name: Option<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// QEMU accelerator for the scenarios.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Echo the serial output of the scenarios.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    let root = bindgen::workspace_root();
    match command {
        Command::Build => {
            let guests = images::guest_packages(&root)?;
            let built = images::build(&root, &guests)?;
            built.print();
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(&root, args),
        Command::Bundle { manifest, output } => {
            let m = bundle::Manifest::load(&manifest)?;
            let out =
                output.unwrap_or_else(|| bundle::default_output(&root, &file_stem(&manifest)));
            m.write(&root, &out)?;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Test(args) => {
            if args.list {
                scenarios::list();
                for t in fuzz::TARGETS {
                    let name = format!("fuzz {t}");
                    println!(
                        "{name:<32} {} executions of the {t} fuzz target",
                        fuzz::test_runs(t)
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let ok = test::run(&root, args.name.as_deref(), args.accel, args.verbose)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench { name } => {
            bench::run(&root, name.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fuzz { target, time } => {
            let ok = fuzz::run(&root, target.as_deref(), time)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bindgen { check } => {
            bindgen_command(&root, check)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A file's name without its extension, for naming what is built from it.
fn file_stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map_or("bundle".into(), |s| s.to_string_lossy().into_owned())
}

/// What `cargo xtask run` boots when given nothing.
const DEFAULT_MANIFEST: &str = "bundles/default.toml";

fn run(root: &std::path::Path, mut args: RunArgs) -> Result<ExitCode> {
    // A single guest boots bare, as `--kernel` or as an example; several, or a
    // manifest, make a bundle.
    if args.guests.is_empty() && args.kernel.is_none() && args.manifest.is_none() {
        args.manifest = Some(root.join(DEFAULT_MANIFEST));
    }
    if args.guests.is_empty() {
        // With --kernel: the kernel is the guest.
        args.guests.push("hello".into());
    }
    let manifest = match &args.manifest {
        Some(path) => Some((bundle::Manifest::load(path)?, file_stem(path))),
        None if args.guests.len() > 1 => Some((guests_manifest(&args)?, "run".to_owned())),
        None => None,
    };
    if let Some((mut manifest, stem)) = manifest {
        if let Some(name) = &args.mirror {
            manifest.mirror(name)?;
        }
        let out = bundle::default_output(root, &stem);
        manifest.write(root, &out)?;
        // Every image exists before QEMU opens it: missing ones are created, anything
        // but a regular file is refused.
        let disks = manifest.disks();
        let mut nic = manifest.nic();
        if let Some(pcap) = &args.pcap {
            let Some(nic) = nic.as_mut() else {
                bail!("--pcap records the NIC's traffic, and the manifest has none (`nic = \"user\"` on its dom0)");
            };
            nic.pcap = Some(pcap.clone());
        }
        disks::ensure_images(&disks)?;
        let shim = images::build(root, &[])?.shim;
        // The machine holds every domain plus the shim's own memory.
        let memory = args.memory.clone().unwrap_or_else(|| {
            format!(
                "{}M",
                (manifest.total_mib() + 64).next_multiple_of(64).max(256)
            )
        });
        return boot(&shim, &out, "", &args, &memory, disks, nic);
    }
    if args.pcap.is_some() {
        bail!("--pcap records the NIC's traffic: give a manifest whose dom0 has a `nic`");
    }
    let (example, cmdline) = match args.guests[0].split_once(':') {
        Some((e, c)) => (e.to_owned(), Some(c.to_owned())),
        None => (args.guests[0].clone(), None),
    };
    if let Some(cmdline) = cmdline {
        if !args.guest_args.is_empty() {
            bail!("give the guest's command line after `:` or after `--`, not both");
        }
        args.guest_args = vec![cmdline];
    }
    if example.contains('/') && args.kernel.is_none() {
        args.kernel = Some(PathBuf::from(&example));
    }
    // Check the user's kernel before spending time on a build.
    let kernel = match &args.kernel {
        Some(path) => Some(images::prepare_kernel(root, path)?),
        None => None,
    };
    let built = match &kernel {
        Some(_) => images::build(root, &[])?,
        None => {
            let guests = images::guest_packages(root)?;
            if !guests.contains(&example) {
                bail!(
                    "no example named `{example}` (examples: {}); a path to a kernel needs a `/`",
                    guests.join(", ")
                );
            }
            images::build(root, std::slice::from_ref(&example))?
        }
    };
    let guest = match kernel {
        Some(path) => path,
        None => built.guest(&example)?,
    };
    let shim_opts = args
        .dom0_mem
        .as_ref()
        .map_or(String::new(), |m| format!("dom0_mem={m}"));
    let cmdline = qemu::shim_cmdline(&shim_opts, &args.guest_args.join(" "));
    let memory = args.memory.clone().unwrap_or_else(|| "256M".into());
    boot(
        &built.shim,
        &guest,
        &cmdline,
        &args,
        &memory,
        Vec::new(),
        None,
    )
}

/// The bundle of `run GUEST GUEST...`: `--dom0-mem` and the arguments after `--` go to
/// the first guest, dom0.
fn guests_manifest(args: &RunArgs) -> Result<bundle::Manifest> {
    let mut guests = args.guests.clone();
    if !args.guest_args.is_empty() {
        if guests[0].contains(':') {
            bail!("give the first guest's command line after `:` or after `--`, not both");
        }
        guests[0] = format!("{}:{}", guests[0], args.guest_args.join(" "));
    }
    let dom0_kib = match &args.dom0_mem {
        Some(m) => bundle::parse_memory(m).map_err(|e| anyhow::anyhow!("--dom0-mem: {e}"))?,
        None => bundle::DEFAULT_DOM0_MIB << 10,
    };
    let cwd = std::env::current_dir().context("current directory")?;
    bundle::Manifest::from_guests(&guests, dom0_kib, &cwd)
}

/// Boots the shim with `module` (and a manifest's `disks` and `nic`) and reports how
/// the run ended as run's exit status.
fn boot(
    shim: &std::path::Path,
    module: &std::path::Path,
    cmdline: &str,
    args: &RunArgs,
    memory: &str,
    disks: Vec<disks::Disk>,
    nic: Option<qemu::Nic>,
) -> Result<ExitCode> {
    deps::ensure_qemu()?;
    if let Some(qemu::Nic {
        backend: qemu::NicBackend::User { hostfwd },
        ..
    }) = &nic
    {
        for f in hostfwd {
            eprintln!(
                "==> open http://127.0.0.1:{}/ (QEMU forwards it to {}:{}; up once the guest says it serves)",
                f.host_port, f.guest, f.guest_port
            );
        }
    }
    let cmd = qemu::Machine::shim(shim, module, cmdline)
        .accel(args.accel)
        .memory(memory)
        .disks(disks)
        .nic(nic)
        .command();
    eprintln!("==> booting {} on the shim", module.display());
    eprintln!("    {}", qemu::display_command(&cmd));
    let status = qemu::run_interactive(cmd, args.timeout.map(Duration::from_secs))?;
    let outcome = match status {
        Some(status) => qemu::outcome(status),
        None => {
            eprintln!(
                "==> timed out after {} s: QEMU killed",
                args.timeout.unwrap_or_default()
            );
            return Ok(ExitCode::from(4));
        }
    };
    eprintln!("==> {outcome}");
    Ok(ExitCode::from(match outcome {
        Outcome::PowerOff => 0,
        Outcome::Crash => 1,
        Outcome::ShimPanic => 2,
        Outcome::Reboot => 3,
        Outcome::Other(_) => 4,
    }))
}

fn bindgen_command(root: &std::path::Path, check: bool) -> Result<()> {
    deps::ensure_bindgen_deps()?;
    let headers = std::path::Path::new(deps::XEN_HEADERS);
    if check {
        bindgen::check(headers, root)?;
        println!(
            "{} and {} are up to date",
            bindgen::OUTPUT,
            bindgen::TOOLS_OUTPUT
        );
    } else {
        for (path, fresh) in bindgen::generate(headers)? {
            let output = root.join(path);
            std::fs::write(&output, fresh)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {path}");
        }
    }
    Ok(())
}
