//! `cargo xtask test`: every check in one command, in order: rustfmt, clippy (host
//! crates, then the bare-metal ones for their target), host tests, the bindings check,
//! a short fixed-seed run of each fuzz target, then the QEMU scenarios. Each step prints
//! a progress line; a failed step does not stop the next ones (so one run shows every
//! problem), and a summary ends the run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::qemu::{display_command, Accel};
use crate::scenarios::{self, Ctx};
use crate::{bindgen, deps, fuzz, images};

enum Status {
    Ok,
    Failed(String),
    Skipped(String),
}

struct Step {
    name: String,
    status: Status,
    time: Duration,
}

#[derive(Default)]
struct Summary {
    steps: Vec<Step>,
}

impl Summary {
    fn record(&mut self, name: &str, start: Instant, status: Status) {
        self.steps.push(Step {
            name: name.to_owned(),
            status,
            time: start.elapsed(),
        });
    }

    /// Runs a command whose output goes straight to the terminal.
    fn command(&mut self, name: &str, mut cmd: Command) {
        println!("==> {name}: {}", display_command(&cmd));
        let start = Instant::now();
        let status = match cmd.status() {
            Ok(s) if s.success() => Status::Ok,
            Ok(s) => Status::Failed(format!("exited with {s}")),
            Err(e) => Status::Failed(format!("could not start: {e}")),
        };
        self.report(name, start, status);
    }

    /// Records and prints a step's result.
    fn report(&mut self, name: &str, start: Instant, status: Status) {
        let secs = start.elapsed().as_secs_f64();
        match &status {
            Status::Ok => println!("==> {name} ... ok ({secs:.1}s)"),
            Status::Failed(why) => println!("==> {name} ... FAILED ({secs:.1}s): {why}"),
            Status::Skipped(why) => println!("==> {name} ... skipped: {why}"),
        }
        self.record(name, start, status);
    }

    fn print(&self) -> bool {
        let count = |f: fn(&Status) -> bool| self.steps.iter().filter(|s| f(&s.status)).count();
        let ok = count(|s| matches!(s, Status::Ok));
        let failed = count(|s| matches!(s, Status::Failed(_)));
        let skipped = count(|s| matches!(s, Status::Skipped(_)));
        println!();
        println!("summary: {ok} ok, {failed} failed, {skipped} skipped");
        for s in &self.steps {
            let (tag, why) = match &s.status {
                Status::Ok => ("ok     ", String::new()),
                Status::Failed(why) => ("FAILED ", format!(": {why}")),
                Status::Skipped(why) => ("skipped", format!(": {why}")),
            };
            println!("  {tag} {} ({:.1}s){why}", s.name, s.time.as_secs_f64());
        }
        failed == 0
    }
}

/// Runs the whole sequence, or with `filter` only the scenarios and fuzz steps whose
/// name contains it. Returns whether everything passed.
pub fn run(root: &Path, filter: Option<&str>, accel: Accel, verbose: bool) -> Result<bool> {
    let all = scenarios::all();
    let selected: Vec<_> = all
        .iter()
        .filter(|s| filter.is_none_or(|f| s.name.contains(f)))
        .collect();
    let fuzz_targets: Vec<&str> = fuzz::TARGETS
        .iter()
        .copied()
        .filter(|t| filter.is_none_or(|f| fuzz_step(t).contains(f)))
        .collect();
    if let (Some(f), true, true) = (filter, selected.is_empty(), fuzz_targets.is_empty()) {
        bail!("no scenario or fuzz step name contains `{f}` (see `cargo xtask test --list`)");
    }
    let guests = images::guest_packages(root)?;
    let mut summary = Summary::default();

    if filter.is_none() {
        let mut fmt = images::cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        summary.command("fmt", fmt);

        // No --workspace: the default-members are the host crates.
        let mut clippy = images::cargo();
        clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
        summary.command("clippy (host)", clippy);

        let start = Instant::now();
        match deps::ensure_target() {
            Ok(()) => {
                let mut clippy = images::cargo();
                clippy.args(["clippy", "--target", deps::TARGET]);
                for p in [images::SHIM, "libos"]
                    .into_iter()
                    .chain(guests.iter().map(String::as_str))
                {
                    clippy.args(["-p", p]);
                }
                clippy.args(["--", "-D", "warnings"]);
                summary.command("clippy (bare metal)", clippy);
            }
            Err(e) => summary.report(
                "clippy (bare metal)",
                start,
                Status::Failed(format!("{e:#}")),
            ),
        }

        let mut test = images::cargo();
        test.arg("test");
        summary.command("host tests", test);

        bindings(root, &mut summary);
    }

    fuzz_steps(root, &fuzz_targets, &mut summary);
    if filter.is_none() || !selected.is_empty() {
        scenarios(root, &guests, &selected, accel, verbose, &mut summary);
    }
    Ok(summary.print())
}

fn fuzz_step(target: &str) -> String {
    format!("fuzz {target}")
}

/// Builds the fuzz targets, then runs each of `targets` for [`fuzz::test_runs`]
/// executions over its seed corpus and crash regressions.
fn fuzz_steps(root: &Path, targets: &[&str], summary: &mut Summary) {
    if targets.is_empty() {
        return;
    }
    const BUILD: &str = "fuzz build";
    println!(
        "==> {BUILD}: {} targets with cargo-fuzz",
        fuzz::TARGETS.len()
    );
    let start = Instant::now();
    let bins = match fuzz::build(root, None) {
        Ok(bins) => {
            summary.report(BUILD, start, Status::Ok);
            bins
        }
        Err(e) => {
            summary.report(BUILD, start, Status::Failed(format!("{e:#}")));
            for t in targets {
                summary.report(
                    &fuzz_step(t),
                    Instant::now(),
                    Status::Skipped("not built".into()),
                );
            }
            return;
        }
    };
    for t in targets {
        let name = fuzz_step(t);
        println!(
            "==> {name}: {} executions (seed corpus and regressions first)",
            fuzz::test_runs(t)
        );
        let start = Instant::now();
        let status = match fuzz::test_target(root, &bins, t) {
            Ok(o) if o.passed => Status::Ok,
            Ok(o) => Status::Failed(match o.artifact {
                Some(a) => format!(
                    "failing input written to {a} (once fixed, keep it in fuzz/regressions/{t}/)"
                ),
                None => "the target failed (see its output)".into(),
            }),
            Err(e) => Status::Failed(format!("{e:#}")),
        };
        summary.report(&name, start, status);
    }
}

/// The checked-in bindings against a fresh generation; skipped when libclang or the Xen
/// headers are missing and cannot be installed.
fn bindings(root: &Path, summary: &mut Summary) {
    const NAME: &str = "bindings";
    println!(
        "==> {NAME}: regenerate {} and {} and compare",
        bindgen::OUTPUT,
        bindgen::TOOLS_OUTPUT
    );
    let start = Instant::now();
    if let Err(e) = deps::ensure_bindgen_deps() {
        summary.report(
            NAME,
            start,
            Status::Skipped(format!(
                "cannot regenerate without libclang and the Xen headers: {e:#}"
            )),
        );
        return;
    }
    let status = bindgen::check(Path::new(deps::XEN_HEADERS), root);
    let status = match status {
        Ok(()) => Status::Ok,
        Err(e) => Status::Failed(format!("{e:#}")),
    };
    summary.report(NAME, start, status);
}

fn scenarios(
    root: &Path,
    guests: &[String],
    selected: &[&scenarios::Scenario],
    accel: Accel,
    verbose: bool,
    summary: &mut Summary,
) {
    let start = Instant::now();
    let images = match images::build(root, guests) {
        Ok(images) => {
            summary.report("build images", start, Status::Ok);
            Some(images)
        }
        Err(e) => {
            summary.report("build images", start, Status::Failed(format!("{e:#}")));
            None
        }
    };
    let start = Instant::now();
    let qemu = match deps::ensure_qemu() {
        Ok(()) => true,
        Err(e) => {
            summary.report("QEMU", start, Status::Failed(format!("{e:#}")));
            false
        }
    };
    let images = match images {
        Some(images) if qemu => images,
        _ => {
            for s in selected {
                let name = format!("scenario {}", s.name);
                summary.report(
                    &name,
                    Instant::now(),
                    Status::Skipped("no images or no QEMU".into()),
                );
            }
            return;
        }
    };
    let ctx = Ctx {
        images: &images,
        target_dir: images::target_dir(root),
        accel,
        verbose,
    };
    for s in selected {
        let name = format!("scenario {}", s.name);
        println!("==> {name}: {}", s.description);
        let start = Instant::now();
        match (s.run)(&ctx) {
            Ok(pass) => {
                if let Some(t) = pass.first_guest_line {
                    println!(
                        "    first guest line {:.3}s after QEMU start",
                        t.as_secs_f64()
                    );
                }
                summary.report(&name, start, Status::Ok);
            }
            Err(failure) => {
                if !failure.log.is_empty() {
                    println!("    last {} lines of output:", failure.log.len());
                    for line in &failure.log {
                        println!("    | {line}");
                    }
                }
                summary.report(&name, start, Status::Failed(failure.reason));
            }
        }
    }
}
