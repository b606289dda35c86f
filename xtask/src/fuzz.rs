//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (cargo-fuzz's layout, a
//! workspace of its own), built with AddressSanitizer and run one at a time in one
//! process (one core); and the short, fixed-seed run that `cargo xtask test` makes of
//! each over its checked-in seed corpus and crash regressions.
//!
//! cargo-fuzz passes `-Zsanitizer=address`, which only a nightly compiler accepts. This
//! machine has the stable toolchain only, so the build sets `RUSTC_BOOTSTRAP=1`, which
//! lets stable rustc take the flag (the instrumentation itself, `-Cpasses=sancov-module`
//! and the `-Cllvm-args`, is stable).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::images;
use crate::qemu::display_command;

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`): one per parser of guest- or
/// user-supplied bytes, and the hypercall sequences.
pub const TARGETS: &[&str] = &[
    "bundle",
    "elf",
    "bzimage",
    "xs_wire",
    "xenstored",
    "xs_client",
    "byte_ring",
    "blkif",
    "blkfront",
    "kvlog",
    "offload",
    "hypercalls",
];

/// Executions of each target in `cargo xtask test`: a few seconds each. The
/// hypercall sequences build three domains per execution (about 40 a second with
/// AddressSanitizer here), so they get fewer.
pub fn test_runs(target: &str) -> u32 {
    match target {
        "hypercalls" => 400,
        _ => 4000,
    }
}

/// libFuzzer's seed for `cargo xtask test`: the same mutations every run.
const TEST_SEED: u32 = 1;

/// An input running longer than this is reported as a hang.
const TIMEOUT_SECS: u32 = 10;

const SANITIZER: &str = "address";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// What one run of a target printed at its end.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: bool,
    pub execs: Option<u64>,
    pub cov: Option<u64>,
    pub secs: f64,
    /// The input that failed, as libFuzzer names it ("Test unit written to ...").
    pub artifact: Option<String>,
}

fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("fuzz")
}

fn target_dir(root: &Path) -> PathBuf {
    images::target_dir(root).join("fuzz")
}

/// Installs cargo-fuzz if `cargo fuzz` does not run (cargo install shows its progress).
pub fn ensure_cargo_fuzz() -> Result<()> {
    let found = images::cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    println!("==> cargo-fuzz is missing: cargo install cargo-fuzz --locked");
    let ok = images::cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("cargo-fuzz is missing and could not be installed: run `cargo install cargo-fuzz --locked`");
    }
    Ok(())
}

fn nightly() -> bool {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nightly"))
}

/// Builds `only` (or every target) with cargo-fuzz; returns the binaries' directory.
pub fn build(root: &Path, only: Option<&str>) -> Result<PathBuf> {
    ensure_cargo_fuzz()?;
    let mut cmd = images::cargo();
    cmd.args(["fuzz", "build", "--release", "--debug-assertions"])
        .args(["--sanitizer", SANITIZER, "--target", TRIPLE])
        .arg("--fuzz-dir")
        .arg(fuzz_dir(root))
        .arg("--target-dir")
        .arg(target_dir(root));
    cmd.args(only);
    if !nightly() {
        println!(
            "==> stable toolchain: building with RUSTC_BOOTSTRAP=1 so that rustc accepts cargo-fuzz's nightly-only -Zsanitizer={SANITIZER}"
        );
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    println!("==> {}", display_command(&cmd));
    let status = cmd.status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    Ok(target_dir(root).join(TRIPLE).join("release"))
}

/// How much of libFuzzer's output to show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    All,
    /// Its start and end lines, and the last lines if the target fails.
    Summary,
}

/// Lines of libFuzzer's output shown when a quiet run fails.
const FAILURE_TAIL: usize = 60;

/// Runs a built target with libFuzzer `args`, echoing its output, and reads the
/// numbers of its last lines.
fn run_binary(mut cmd: Command, target: &str, args: &[String], echo: Echo) -> Result<Outcome> {
    cmd.args(args).stderr(Stdio::piped());
    println!("==> {}", display_command(&cmd));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting fuzz target {target}"))?;
    let mut outcome = Outcome::default();
    let mut tail = std::collections::VecDeque::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        if echo == Echo::All || line.contains("INITED") || line.contains("DONE") {
            eprintln!("{line}");
        } else {
            if tail.len() == FAILURE_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        let field = |name: &str| -> Option<u64> {
            let at = line.find(name)? + name.len();
            let digits: String = line[at..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        if let Some(n) = field("stat::number_of_executed_units:") {
            outcome.execs = Some(n);
        }
        if line.starts_with('#') {
            if let Some(c) = field("cov:") {
                outcome.cov = Some(c);
            }
        }
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            outcome.artifact = Some(path.trim().to_owned());
        }
    }
    let status = child.wait().context("waiting for the fuzz target")?;
    outcome.secs = start.elapsed().as_secs_f64();
    outcome.passed = status.success();
    if !outcome.passed {
        for line in tail {
            eprintln!("{line}");
        }
    }
    Ok(outcome)
}

fn common_args(artifacts: &Path) -> Vec<String> {
    vec![
        format!("-timeout={TIMEOUT_SECS}"),
        "-print_final_stats=1".into(),
        format!("-artifact_prefix={}/", artifacts.display()),
    ]
}

/// Corpus directories after the one libFuzzer writes to: the checked-in seeds and crash
/// regressions of `target`, those that exist.
fn checked_in(root: &Path, target: &str) -> Vec<String> {
    ["corpus", "regressions"]
        .iter()
        .map(|d| fuzz_dir(root).join(d).join(target))
        .filter(|d| d.is_dir())
        .map(|d| d.display().to_string())
        .collect()
}

fn check_target(target: &str) -> Result<()> {
    if !TARGETS.contains(&target) {
        bail!(
            "no fuzz target `{target}` (targets: {})",
            TARGETS.join(", ")
        );
    }
    Ok(())
}

/// `cargo xtask fuzz [TARGET] --time S`: fuzzes each target for `secs` seconds, keeping
/// what it learns in `target/fuzz/corpus/<target>/`; a failing input lands in
/// `fuzz/artifacts/<target>/`. Returns whether no target failed.
pub fn run(root: &Path, only: Option<&str>, secs: u64) -> Result<bool> {
    if let Some(t) = only {
        check_target(t)?;
    }
    let bins = build(root, only)?;
    let targets: Vec<&str> = match only {
        Some(t) => vec![t],
        None => TARGETS.to_vec(),
    };
    let mut results = Vec::new();
    for target in targets {
        let corpus = target_dir(root).join("corpus").join(target);
        let artifacts = fuzz_dir(root).join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut args = common_args(&artifacts);
        args.push(format!("-max_total_time={secs}"));
        args.push(corpus.display().to_string());
        args.extend(checked_in(root, target));
        let cmd = Command::new(bins.join(target));
        results.push((target, run_binary(cmd, target, &args, Echo::All)?));
    }
    println!();
    println!(
        "{:<10} {:>12} {:>8} {:>6}  result",
        "target", "executions", "seconds", "cov"
    );
    let num = |n: Option<u64>| n.map_or("?".into(), |n| n.to_string());
    for (target, o) in &results {
        let result = match (&o.artifact, o.passed) {
            (_, true) => "no failure".to_owned(),
            (Some(a), false) => {
                format!("FAILED: {a} (once fixed, move it to fuzz/regressions/{target}/)")
            }
            (None, false) => "FAILED (see its output)".to_owned(),
        };
        println!(
            "{target:<10} {:>12} {:>8.0} {:>6}  {result}",
            num(o.execs),
            o.secs,
            num(o.cov)
        );
    }
    Ok(results.iter().all(|(_, o)| o.passed))
}

/// One target's step of `cargo xtask test`: [`test_runs`] executions with a fixed seed
/// over the checked-in seeds and regressions (each of which runs first), from an empty
/// working corpus so that every run is the same.
pub fn test_target(root: &Path, bins: &Path, target: &str) -> Result<Outcome> {
    let work = target_dir(root).join("test").join(target);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("emptying {}", work.display()))?;
    }
    let artifacts = work.join("artifacts");
    let corpus = work.join("corpus");
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut args = common_args(&artifacts);
    args.push(format!("-runs={}", test_runs(target)));
    args.push(format!("-seed={TEST_SEED}"));
    // No re-reading of the corpus directory on a timer, which makes runs differ.
    args.push("-reload=0".into());
    args.push(corpus.display().to_string());
    args.extend(checked_in(root, target));
    run_binary(
        without_aslr(&bins.join(target)),
        target,
        &args,
        Echo::Summary,
    )
}

/// A command running `bin` with address-space randomisation off where `setarch` can do
/// that: libFuzzer's comparison tracing sees addresses (a slice iterator's end pointer,
/// say), and with them changing from run to run, runs with the same seed would mutate
/// differently.
fn without_aslr(bin: &Path) -> Command {
    let works = Command::new("setarch")
        .args([std::env::consts::ARCH, "-R", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return Command::new(bin);
    }
    let mut cmd = Command::new("setarch");
    cmd.args([std::env::consts::ARCH, "-R"]).arg(bin);
    cmd
}
