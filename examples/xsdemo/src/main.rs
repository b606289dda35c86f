//! xsdemo: a domU that uses xenstore through libos's xenbus client: it reads what the
//! toolstack wrote about it (`domid`, `name`), writes and reads its own nodes, watches
//! one, counts with transactions (and sees a conflicting transaction refused with
//! `EAGAIN`), checks that another domain's nodes and dom0's are closed to it
//! (`EACCES`), then waits: the toolstack's `control/shutdown` request ends it (libos
//! obeys from the store's event handler).
//!
//! After its OK line it writes `data/done`, which a dom0 started with `poweroff-on=data/done`
//! answers with a `control/shutdown` request.
//!
//! Command line: `peer=N` names another domU whose nodes it must not reach; `rounds=N`
//! transactions to commit (default 20). Two other modes: `flood=N` prints N numbered
//! lines of 100 bytes as fast as the console takes them, then powers off (the console
//! scenario); `echo` prints every line typed on its console (`xsdemo: got "LINE"`)
//! until it gets `quit`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use libos::xenbus::{self, Store, Tx, NO_TX};
use libos::{executor, println, start_info};
use pv_core::xs_wire::XsError;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("xsdemo: FAILED: {}", format_args!($($msg)+));
        }
    };
}

fn arg(name: &str) -> Option<u64> {
    start_info::get()
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn flood(lines: u64) {
    for i in 0..lines {
        // 100 bytes a line: "flood NNNNNN " + filler + newline.
        println!("flood {i:06} {:.<86}", "");
    }
    println!("xsdemo: flood of {lines} lines done");
}

async fn counter(tx: Tx) -> Result<u64, XsError> {
    let v = xenbus::store()?.read_string(tx, "data/counter").await?;
    v.parse().map_err(|_| XsError::EINVAL)
}

async fn demo() -> Result<(), XsError> {
    let domid = xenbus::store()?.read_string(NO_TX, "domid").await?;
    let name = xenbus::store()?.read_string(NO_TX, "name").await?;
    let home = xenbus::store()?
        .get_domain_path(domid.parse().unwrap_or(0))
        .await?;
    println!("xsdemo: I am domain {domid} ({name}), home {home}");

    xenbus::store()?
        .write(NO_TX, "data/greeting", b"hello, store")
        .await?;
    let back = xenbus::store()?.read(NO_TX, "data/greeting").await?;
    ensure!(back == b"hello, store", "read back {back:?}");
    let entries = xenbus::store()?.directory(NO_TX, "data").await?;
    ensure!(
        entries.iter().any(|e| e == "greeting"),
        "data/ lists {entries:?}"
    );
    println!("xsdemo: wrote and read back data/greeting; data/ holds {entries:?}");

    // A watch fires once at once, then on every change under its node.
    xenbus::store()?.write(NO_TX, "data/counter", b"0").await?;
    let mut watch = xenbus::store()?.watch("data/counter").await?;
    let first = watch.next().await?;
    ensure!(first.ends_with("data/counter"), "first watch event {first}");

    let rounds = arg("rounds").unwrap_or(20);
    let mut retries = 0;
    for _ in 0..rounds {
        loop {
            let tx = xenbus::store()?.transaction_start().await?;
            let n = counter(tx).await?;
            xenbus::store()?
                .write(tx, "data/counter", format!("{}", n + 1).as_bytes())
                .await?;
            match xenbus::store()?.transaction_end(tx, true).await {
                Ok(()) => break,
                Err(XsError::EAGAIN) => retries += 1,
                Err(e) => return Err(e),
            }
        }
        let fired = watch.next().await?;
        ensure!(fired.ends_with("data/counter"), "watch fired for {fired}");
    }
    let n = counter(NO_TX).await?;
    ensure!(
        n == rounds,
        "counter is {n} after {rounds} committed transactions"
    );
    println!("xsdemo: {rounds} transactions committed ({retries} retried), counter {n}, one watch event each");

    // A transaction whose node changed under it is refused, and writes nothing.
    let tx = xenbus::store()?.transaction_start().await?;
    let n = counter(tx).await?;
    xenbus::store()?
        .write(NO_TX, "data/counter", b"1000")
        .await?;
    xenbus::store()?
        .write(tx, "data/counter", format!("{}", n + 1).as_bytes())
        .await?;
    let end = xenbus::store()?.transaction_end(tx, true).await;
    ensure!(
        end == Err(XsError::EAGAIN),
        "conflicting commit answered {end:?}"
    );
    ensure!(
        counter(NO_TX).await? == 1000,
        "the refused transaction wrote"
    );
    println!("xsdemo: a conflicting transaction was refused with EAGAIN and wrote nothing");
    watch.unwatch().await?;

    // Other domains' nodes, and dom0's, are closed to us.
    let mut refused = String::new();
    let mut targets = alloc::vec![String::from("/local/domain/0"), String::from("/tool")];
    if let Some(peer) = arg("peer") {
        targets.push(format!("/local/domain/{peer}/name"));
        targets.push(format!("/local/domain/{peer}/data/greeting"));
    }
    for t in &targets {
        let r = xenbus::store()?.read(NO_TX, t).await;
        ensure!(
            matches!(r, Err(XsError::EACCES) | Err(XsError::ENOENT)),
            "read {t}: {r:?}"
        );
        let w = xenbus::store()?
            .write(NO_TX, &format!("{t}/intruder"), b"x")
            .await;
        ensure!(w == Err(XsError::EACCES), "write {t}/intruder: {w:?}");
        refused.push_str(&format!(
            " {t}: read {:?}, write EACCES;",
            r.err().unwrap_or(XsError::EIO)
        ));
    }
    println!("xsdemo: refused:{refused}");
    Ok(())
}

async fn echo() {
    let Some(port) = libos::console::ring_port() else {
        panic!("xsdemo: FAILED: no console ring to read");
    };
    println!("xsdemo: echo: type a line");
    let mut line = alloc::vec::Vec::new();
    loop {
        let mut buf = [0u8; 64];
        let n = libos::console::read(&mut buf);
        if n == 0 {
            executor::wait_event(port).await;
            continue;
        }
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                let text = String::from_utf8_lossy(&line).into_owned();
                println!("xsdemo: got {text:?}");
                if text == "quit" {
                    return;
                }
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
}

fn main() {
    if let Some(lines) = arg("flood") {
        flood(lines);
        return;
    }
    if start_info::get()
        .cmdline()
        .split_whitespace()
        .any(|w| w == "echo")
    {
        executor::block_on(echo());
        return;
    }
    ensure!(
        xenbus::available(),
        "no xenstore ring (start_info.store_evtchn is 0)"
    );
    if let Err(e) = executor::block_on(demo()) {
        panic!("xsdemo: FAILED: xenstore answered {e}");
    }
    println!("xsdemo: OK; waiting for the toolstack's control/shutdown");
    // After the OK line: the request it answers may end us at once (libos obeys from
    // the store's event handler).
    let done = executor::block_on(async { xenbus::store()?.write(NO_TX, "data/done", b"1").await });
    if let Err(e) = done {
        panic!("xsdemo: FAILED: writing data/done: {e}");
    }
    executor::block_on(core::future::pending::<()>());
}

libos::main!(main);
