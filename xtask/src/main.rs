//! `cargo xtask`: the one entry point for building, running and testing the stack.
//!
//! The bare-metal images need a target, a linker set-up and QEMU command lines that
//! nobody should have to remember; tests need QEMU scenarios that plain `cargo test`
//! cannot run. This binary is a small clap dispatcher; each concern has its module:
//!
//! * [`deps`]: installs what is missing (QEMU, the Rust target, libclang, Xen headers);
//! * [`images`]: builds the shim and the guest images into `target/images/`;
//! * [`qemu`]: QEMU command lines, running with a deadline, the exit-status convention;
//! * [`scenarios`]: the QEMU scenarios of `cargo xtask test`;
//! * [`xen`]: fetches upstream Xen 4.17, the reference our guests must also boot on;
//! * [`bindgen`]: regenerates and checks `xen-sys/src/bindings.rs`;
//! * [`test`]: the `cargo xtask test` sequence and its summary.

mod attacks;
mod bench;
mod bindgen;
mod bzimage;
mod debian;
mod deps;
mod grub;
mod images;
mod linux;
mod qemu;
mod scenarios;
mod test;
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
    after_help = "Start with `cargo xtask run` (boots the hello guest) and `cargo xtask test`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the shim and every guest image (examples/*) into target/images/.
    Build,
    /// Boot the shim with a guest in QEMU, serial console on stdout.
    ///
    /// Exit status: 0 if the guest powered off, 1 if it crashed, 2 if the shim
    /// panicked, 3 if the guest asked for a reboot, 4 for anything else (timeout,
    /// QEMU error).
    Run(RunArgs),
    /// Run rustfmt, clippy, host tests, the bindings check and the QEMU scenarios.
    Test(TestArgs),
    /// Measure boot, domain build, hypercall costs and footprint beside upstream Xen
    /// 4.17; print the table and write it as JSON under target/bench/.
    Bench {
        /// Only the benchmark groups whose name contains NAME (boot, build, hypercall,
        /// ring, footprint, io).
        name: Option<String>,
    },
    /// Regenerate xen-sys/src/bindings.rs from the Xen public headers.
    Bindgen {
        /// Only check that the checked-in file matches a fresh generation.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The example guest to boot (a package under examples/).
    #[arg(default_value = "hello", conflicts_with = "kernel")]
    example: String,
    /// Boot this PV kernel (an ELF, or a Linux bzImage) as the only, privileged domain
    /// instead of an example.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// QEMU accelerator (TCG works everywhere; KVM only on real hosts).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Machine memory, in QEMU's `-m` syntax.
    #[arg(long, default_value = "256M")]
    memory: String,
    /// Kill QEMU after this many seconds (default: no limit).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Memory of the domain, as the shim's (and Xen's) `dom0_mem=` option (e.g. 512M).
    #[arg(long, value_name = "SIZE")]
    dom0_mem: Option<String>,
    /// The guest's command line (after `--`).
    #[arg(last = true, value_name = "GUEST_ARGS")]
    guest_args: Vec<String>,
}

#[derive(Args)]
struct TestArgs {
    /// Run only the QEMU scenarios whose name contains NAME (and skip the other steps).
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
        Command::Test(args) => {
            if args.list {
                scenarios::list();
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
        Command::Bindgen { check } => {
            bindgen_command(&root, check)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(root: &std::path::Path, args: RunArgs) -> Result<ExitCode> {
    // Check the user's kernel before spending time on a build.
    let kernel = match &args.kernel {
        Some(path) => Some(images::prepare_kernel(root, path)?),
        None => None,
    };
    let built = match &kernel {
        Some(_) => images::build(root, &[])?,
        None => {
            let guests = images::guest_packages(root)?;
            if !guests.contains(&args.example) {
                bail!(
                    "no example named `{}` (examples: {})",
                    args.example,
                    guests.join(", ")
                );
            }
            images::build(root, std::slice::from_ref(&args.example))?
        }
    };
    let guest = match kernel {
        Some(path) => path,
        None => built.guest(&args.example)?,
    };
    deps::ensure_qemu()?;

    let shim_opts = args
        .dom0_mem
        .as_ref()
        .map_or(String::new(), |m| format!("dom0_mem={m}"));
    let cmdline = qemu::shim_cmdline(&shim_opts, &args.guest_args.join(" "));
    let cmd = qemu::shim_command(&built.shim, &guest, &cmdline, args.accel, &args.memory);
    eprintln!("==> booting {} on the shim", guest.display());
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
    let output = root.join(bindgen::OUTPUT);
    if check {
        let existing = std::fs::read_to_string(&output)
            .with_context(|| format!("reading {}", output.display()))?;
        bindgen::check(std::path::Path::new(deps::XEN_HEADERS), &existing)?;
        println!("{} is up to date", bindgen::OUTPUT);
    } else {
        let fresh = bindgen::generate(std::path::Path::new(deps::XEN_HEADERS))?;
        std::fs::write(&output, fresh).with_context(|| format!("writing {}", output.display()))?;
        println!("wrote {}", bindgen::OUTPUT);
    }
    Ok(())
}
