//! kvstore: an appliance with a persistent key-value store on its virtual disk (the
//! first vbd the toolstack gave it), `kvlog` over libos's blkfront, driven from its
//! console. A write is acknowledged (`ok`) only after blkfront got the answer to the
//! flush that follows it; lines typed together are committed together (one write, one
//! flush).
//!
//! Commands, one per line:
//!
//! - `put KEY VALUE` (the value is the rest of the line), `get KEY`, `del KEY`,
//!   `list`, `stats`;
//! - `fill N [FROM]`: puts `k<i>` = `v<i>.<i*7919+seed>` for i in FROM..FROM+N, committing
//!   every 64 and printing `kvstore: acked k<i>` after each commit (the crash scenario
//!   reads these);
//! - `verify N`: checks `k0..k<N-1>` and prints how many are intact, the first one
//!   missing and how many hold a wrong value.
//!
//! At boot it prints what recovery found: `kvstore: ready: N keys (replayed R
//! records, torn tail: yes/no, formatted: yes/no)`. On a read-only disk (`mode=r`) it
//! opens the store read-only and answers every change with an error; `write-test`
//! then tries a raw write to the disk and prints how it was refused.
//!
//! - `features`: what the vbd negotiated, as xenstore has it (ours and the back end's
//!   nodes);
//! - `discard-test`: discards the first 4 MiB of the log (the store is gone after it:
//!   for tests of the discard path) and says how it went.
//!
//! Command line: `listen=PORT` also takes the commands over TCP (the vif's address),
//! one per line, each answered with one line, what the console prints without
//! `kvstore: ` (httpd's `/kv/` REST front speaks this); `fill=N`, `features`, `verify=N`
//! and `discard-test` run those commands at boot (in that order),
//! `exit` powers off after them instead of reading the console; `seed=S` changes the
//! values `fill` writes and `verify` expects.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use kvlog::{IoError, Kv, Storage};
use libos::blk::{self, Disk};
use libos::xenbus::Store;
use libos::{executor, net, println, start_info};

fn arg(name: &str) -> Option<u64> {
    start_info::get()
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The appliance's disk, as kvlog wants it.
struct Vbd(&'static Disk);

impl Storage for Vbd {
    fn size(&self) -> u64 {
        self.0.size()
    }
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read(offset, buf).await.map_err(|_| IoError)
    }
    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        self.0.write(offset, data).await.map_err(|_| IoError)
    }
    async fn flush(&self) -> Result<(), IoError> {
        self.0.flush().await.map_err(|_| IoError)
    }
}

/// The value `fill` gives `k<i>`: different per `seed=` (so that two appliances
/// filling their disks tell their data apart).
fn fill_value(i: u64) -> String {
    // Read once: the command line does not change.
    static SEED: AtomicU64 = AtomicU64::new(u64::MAX);
    let mut seed = SEED.load(Ordering::Relaxed);
    if seed == u64::MAX {
        seed = arg("seed").unwrap_or(0);
        SEED.store(seed, Ordering::Relaxed);
    }
    format!("v{i}.{}", i.wrapping_mul(7919).wrapping_add(seed))
}

/// What a command answers once its writes are durable.
enum Answer {
    Now(String),
    AfterCommit(String),
}

fn run_command(kv: &mut Kv<Vbd>, line: &str) -> Vec<Answer> {
    let mut words = line.splitn(3, ' ');
    let cmd = words.next().unwrap_or("");
    let a = words.next();
    let b = words.next();
    let now = |s: String| alloc::vec![Answer::Now(s)];
    match (cmd, a, b) {
        ("", _, _) => Vec::new(),
        ("put", Some(k), Some(v)) => match kv.put(k.as_bytes(), v.as_bytes()) {
            Ok(()) => alloc::vec![Answer::AfterCommit(format!("ok put {k}"))],
            Err(e) => now(format!("error: {e}")),
        },
        ("get", Some(k), None) => now(match kv.get(k.as_bytes()) {
            Some(v) => format!("{k} = {}", String::from_utf8_lossy(v)),
            None => format!("{k}: no such key"),
        }),
        ("del", Some(k), None) => match kv.del(k.as_bytes()) {
            Ok(true) => alloc::vec![Answer::AfterCommit(format!("ok del {k}"))],
            Ok(false) => now(format!("{k}: no such key")),
            Err(e) => now(format!("error: {e}")),
        },
        ("list", None, None) => {
            let keys: Vec<String> = kv
                .keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            now(format!("{} keys: {}", keys.len(), keys.join(" ")))
        }
        ("stats", None, None) => {
            let s = kv.stats();
            now(format!(
                "{} keys, log {} of {} bytes, {} commits, {} records written, {} replayed at boot",
                kv.len(),
                s.log_bytes,
                s.disk_bytes,
                s.commits,
                s.records_written,
                s.replayed
            ))
        }
        ("verify", Some(n), None) => {
            let Ok(n) = n.parse::<u64>() else {
                return now(String::from("usage: verify N"));
            };
            let (mut intact, mut bad, mut first_missing) = (0, 0, None);
            for i in 0..n {
                match kv.get(format!("k{i}").as_bytes()) {
                    Some(v) if v == fill_value(i).as_bytes() => intact += 1,
                    Some(_) => bad += 1,
                    None => {
                        first_missing.get_or_insert(i);
                    }
                }
            }
            let missing = first_missing.map_or(String::from("none"), |i| format!("k{i}"));
            now(format!(
                "verify: {intact} intact, {bad} wrong, first missing {missing}"
            ))
        }
        _ => now(format!(
            "unknown command {line:?}: put get del list stats fill verify features \
             discard-test write-test"
        )),
    }
}

/// The vbd's nodes that say what was negotiated.
async fn features(id: u32) {
    let Ok(xs) = libos::xenbus::store() else {
        return;
    };
    let fe = format!("device/vbd/{id}");
    let be = xs
        .read_string(libos::xenbus::NO_TX, &format!("{fe}/backend"))
        .await;
    let Ok(be) = be else {
        println!("kvstore: features: no back end node");
        return;
    };
    // One line per end (a console line is at most 256 bytes).
    for (side, dir, nodes) in [
        (
            "front",
            &fe,
            &[
                "ring-page-order",
                "multi-queue-num-queues",
                "feature-persistent",
            ][..],
        ),
        (
            "back",
            &be,
            &[
                "max-ring-page-order",
                "multi-queue-max-queues",
                "feature-persistent",
                "feature-flush-cache",
                "feature-barrier",
                "feature-discard",
                "feature-max-indirect-segments",
                "sector-size",
                "physical-sector-size",
                "mode",
            ][..],
        ),
    ] {
        let mut line = format!("features: {side}");
        for node in nodes {
            let v = xs
                .read_string(libos::xenbus::NO_TX, &format!("{dir}/{node}"))
                .await
                .unwrap_or_else(|_| String::from("-"));
            line.push_str(&format!(" {node}={v}"));
        }
        println!("kvstore: {line}");
    }
}

/// Discards the first 4 MiB of the log.
async fn discard_test(disk: &'static Disk) {
    let len = (4u64 << 20).min(disk.size() - kvlog::LOG_START);
    match disk.discard(kvlog::LOG_START, len).await {
        Ok(()) => println!(
            "kvstore: discard-test: discarded {len} bytes at {}",
            kvlog::LOG_START
        ),
        Err(e) => println!("kvstore: discard-test: refused: {e:?}"),
    }
}

/// A raw write of the sector after the log's end, straight to the disk.
async fn write_test(kv: &Kv<Vbd>, disk: &'static Disk) {
    let at = kv.stats().log_bytes;
    match disk.write(at, &[0x5a; 512]).await {
        Ok(()) => println!("kvstore: write-test: the disk took a write at {at}"),
        Err(e) => println!("kvstore: write-test: refused: {e:?}"),
    }
}

/// Commits what `answers` wait for and returns the lines to answer: every `Now` one,
/// and the `AfterCommit` ones only if the commit is durable.
async fn commit(kv: &mut Kv<Vbd>, answers: Vec<Answer>) -> Vec<String> {
    let durable = match kv.commit().await {
        Ok(()) => true,
        Err(e) => {
            println!("kvstore: commit failed: {e}: nothing since the last ok is durable");
            false
        }
    };
    answers
        .into_iter()
        .filter_map(|a| match a {
            Answer::Now(s) => Some(s),
            Answer::AfterCommit(s) if durable => Some(s),
            Answer::AfterCommit(_) => None,
        })
        .collect()
}

async fn commit_and_answer(kv: &mut Kv<Vbd>, answers: Vec<Answer>) {
    for line in commit(kv, answers).await {
        println!("kvstore: {line}");
    }
}

/// The store, shared by the console and the network's connections (one at a time,
/// each holding it for its lines and their commit).
type Shared = libos::sync::Mutex<Kv<Vbd>>;

/// `listen=PORT`: the commands of the console over TCP, one per line, each answered
/// with one line (what the console prints, without `kvstore: `). Lines that came
/// together are committed together, as on the console.
async fn serve_tcp(kv: &'static Shared, port: u16) {
    match net::up().await {
        Ok(_) => {}
        Err(e) => {
            println!("kvstore: no network: {e:?}");
            return;
        }
    }
    let Some(addr) = net::wait_address(core::time::Duration::from_secs(30)).await else {
        println!("kvstore: no address");
        return;
    };
    let mut l = match net::TcpListener::bind(port) {
        Ok(l) => l,
        Err(e) => {
            println!("kvstore: bind {port}: {e:?}");
            return;
        }
    };
    println!("kvstore: listening on {}:{port}", addr.address());
    loop {
        let s = l.accept().await;
        executor::spawn(connection(kv, s));
    }
}

async fn connection(kv: &'static Shared, mut s: net::TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut lines = Vec::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            lines.push(String::from(String::from_utf8_lossy(&line[..end]).trim()));
        }
        if lines.is_empty() {
            if pending.len() > 64 * 1024 {
                break;
            }
            continue;
        }
        let out = {
            let mut kv = kv.lock().await;
            let mut answers = Vec::new();
            for line in &lines {
                answers.extend(run_command(&mut kv, line));
            }
            commit(&mut kv, answers).await
        };
        let mut reply = String::new();
        for line in out {
            reply.push_str(&line);
            reply.push('\n');
        }
        if s.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    s.close(core::time::Duration::from_secs(2)).await;
}

async fn fill(kv: &mut Kv<Vbd>, n: u64, from: u64) {
    for i in from..from + n {
        if let Err(e) = kv.put(format!("k{i}").as_bytes(), fill_value(i).as_bytes()) {
            println!("kvstore: fill stopped at k{i}: {e}");
            return;
        }
        if (i - from) % 64 == 63 || i + 1 == from + n {
            if let Err(e) = kv.commit().await {
                println!("kvstore: fill: commit failed: {e}");
                return;
            }
            println!("kvstore: acked k{i}");
        }
    }
    println!("kvstore: fill done");
}

async fn appliance() {
    let ids = match blk::devices().await {
        Ok(ids) if !ids.is_empty() => ids,
        other => panic!("kvstore: no virtual disk (device/vbd): {other:?}"),
    };
    let disk = blk::open(ids[0])
        .await
        .unwrap_or_else(|e| panic!("kvstore: vbd {} does not connect: {e:?}", ids[0]));
    println!(
        "kvstore: disk {} of {} MiB{}",
        ids[0],
        disk.size() >> 20,
        if disk.readonly() { ", read-only" } else { "" }
    );
    let opened = if disk.readonly() {
        Kv::open_readonly(Vbd(disk)).await
    } else {
        Kv::open(Vbd(disk)).await
    };
    let opened = opened.unwrap_or_else(|e| panic!("kvstore: cannot open the store: {e}"));
    let kv: &'static Shared =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(libos::sync::Mutex::new(opened)));
    {
        let mut kv = kv.lock().await;
        let s = kv.stats();
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!(
            "kvstore: ready: {} keys (replayed {} records, torn tail: {}, formatted: {})",
            kv.len(),
            s.replayed,
            yes(s.torn_tail),
            yes(s.formatted)
        );
        if let Some(n) = arg("fill") {
            fill(&mut kv, n, 0).await;
        }
    }
    let flag = |w: &str| {
        start_info::get()
            .cmdline()
            .split_whitespace()
            .any(|x| x == w)
    };
    if flag("features") {
        features(ids[0]).await;
    }
    if let Some(n) = arg("verify") {
        let mut kv = kv.lock().await;
        let answers = run_command(&mut kv, &format!("verify {n}"));
        commit_and_answer(&mut kv, answers).await;
    }
    if flag("discard-test") {
        discard_test(disk).await;
    }
    if flag("exit") {
        return;
    }
    if let Some(port) = arg("listen") {
        executor::spawn(serve_tcp(kv, port as u16));
    }
    let Some(port) = libos::console::ring_port() else {
        panic!("kvstore: no console ring to read commands from");
    };
    let mut pending = Vec::new();
    loop {
        let mut buf = [0u8; 256];
        let n = libos::console::read(&mut buf);
        if n == 0 {
            executor::wait_event(port).await;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        // Every complete line typed so far, committed together.
        let mut kv = kv.lock().await;
        let mut answers = Vec::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from(String::from_utf8_lossy(&line[..end]).trim());
            let mut words = line.split(' ');
            let first = words.next();
            if first == Some("features") {
                commit_and_answer(&mut kv, core::mem::take(&mut answers)).await;
                features(ids[0]).await;
                continue;
            }
            if first == Some("discard-test") {
                commit_and_answer(&mut kv, core::mem::take(&mut answers)).await;
                discard_test(disk).await;
                continue;
            }
            if first == Some("write-test") {
                commit_and_answer(&mut kv, core::mem::take(&mut answers)).await;
                write_test(&kv, disk).await;
                continue;
            }
            if first == Some("fill") {
                let n = words.next().and_then(|w| w.parse().ok());
                let from = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                commit_and_answer(&mut kv, core::mem::take(&mut answers)).await;
                match n {
                    Some(n) => fill(&mut kv, n, from).await,
                    None => println!("kvstore: usage: fill N [FROM]"),
                }
                continue;
            }
            answers.extend(run_command(&mut kv, &line));
        }
        commit_and_answer(&mut kv, answers).await;
    }
}

fn main() {
    executor::block_on(appliance());
}

libos::main!(main);
