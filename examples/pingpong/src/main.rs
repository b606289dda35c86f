//! pingpong: events bounced over an interdomain event channel, checking strict
//! alternation: each side counts the events its handler receives, and a reception while
//! none is expected (a duplicate) or a reply that never comes (a lost event) is an error.
//!
//! Command line (words, then `key=value`s):
//! - `loopback [rounds=N]`: both ends in this domain (alloc_unbound and
//!   bind_interdomain with DOMID_SELF); also checks that a masked event stays pending
//!   and is delivered on unmask, and that closing one end leaves the other unbound.
//! - `ping peer=D [rounds=N]`: allocates a port for domain D, waits until D binds it.
//!   Detects the peer gone (the port unbound again, or no reply for a while).
//!   With a xenstore (a toolstack built the domain: our dom0, or xl), ping also
//!   publishes the port in its `data/pingpong-port`, readable by D.
//! - `pong peer=D [port=P] [rounds=N] [crash-after=K]`: binds to D's port P, retrying
//!   while D has not allocated it. Without `port=`: the port D published in xenstore,
//!   or, with no xenstore, 1 (the first port of a domain the shim built alone: ping
//!   allocates it before anything else; in a toolstack-built domain ports 1 and 2 are
//!   already its xenstore and console channels). With `crash-after=K` it crashes on
//!   purpose after its K-th reply.
//!
//! N defaults to 10,000.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use libos::events::{self, Port};
use libos::executor::{self, with_timeout};
use libos::hypercall::{self, ChannelState, XenError};
use libos::time;
use libos::timer::sleep;
use libos::xenbus::{Store, NO_TX};
use libos::{println, start_info};
use xen_sys::{domid_t, DOMID_SELF};

/// Events received by each end's handler.
static PING_RX: AtomicU64 = AtomicU64::new(0);
static PONG_RX: AtomicU64 = AtomicU64::new(0);

fn count_ping(_: Port) {
    PING_RX.fetch_add(1, Ordering::SeqCst);
}

fn count_pong(_: Port) {
    PONG_RX.fetch_add(1, Ordering::SeqCst);
}

/// How long a side waits for the other before looking at the port's state.
const PATIENCE: Duration = Duration::from_millis(100);
/// How long without a word from the peer before giving up.
const GIVE_UP: Duration = Duration::from_secs(5);

struct Args {
    role: &'static str,
    rounds: u64,
    peer: Option<domid_t>,
    port: Option<Port>,
    crash_after: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        role: "loopback",
        rounds: 10_000,
        peer: None,
        port: None,
        crash_after: None,
    };
    for w in start_info::get().cmdline().split_whitespace() {
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("pingpong: bad number in {w:?}"))
        };
        match w.split_once('=') {
            Some(("rounds", v)) => a.rounds = num(v),
            Some(("peer", v)) => a.peer = Some(num(v) as domid_t),
            Some(("port", v)) => a.port = Some(num(v) as Port),
            Some(("crash-after", v)) => a.crash_after = Some(num(v)),
            None if matches!(w, "loopback" | "ping" | "pong") => a.role = w,
            _ => panic!("pingpong: unknown argument {w:?}"),
        }
    }
    a
}

fn check(what: &str, r: Result<(), XenError>) {
    if let Err(e) = r {
        panic!("pingpong FAILED: {what}: {e}");
    }
}

/// How ping's run ended.
enum End {
    Done,
    /// The peer closed its end: our port is unbound again.
    PeerClosed(u64),
    /// No reply for [`GIVE_UP`], the port still bound.
    PeerSilent(u64),
}

/// Sends, waits for the reply, `rounds` times. Replies arrive on `port`.
async fn ping(port: Port, rounds: u64) -> End {
    for i in 0..rounds {
        check("send", hypercall::evtchn_send(port));
        let mut waited = Duration::ZERO;
        while with_timeout(PATIENCE, executor::wait_event(port))
            .await
            .is_err()
        {
            waited += PATIENCE;
            match hypercall::evtchn_status(DOMID_SELF, port) {
                Ok(s) if matches!(s.state, ChannelState::Interdomain { .. }) => {}
                Ok(_) => return End::PeerClosed(i),
                Err(e) => panic!("pingpong FAILED: status of port {port}: {e}"),
            }
            if waited >= GIVE_UP {
                return End::PeerSilent(i);
            }
        }
        let got = PING_RX.load(Ordering::SeqCst);
        assert!(
            got == i + 1,
            "pingpong FAILED: ping: round {}: {got} replies received (duplicated or lost event)",
            i + 1
        );
    }
    End::Done
}

/// Waits for a ping, replies, `rounds` times; crashes after reply `crash_after`.
async fn pong(port: Port, rounds: u64, crash_after: Option<u64>) {
    for i in 0..rounds {
        if with_timeout(GIVE_UP, executor::wait_event(port))
            .await
            .is_err()
        {
            panic!("pingpong FAILED: pong: no ping for {GIVE_UP:?} after {i} rounds (lost event)");
        }
        let got = PONG_RX.load(Ordering::SeqCst);
        assert!(
            got == i + 1,
            "pingpong FAILED: pong: round {}: {got} pings received (duplicated or lost event)",
            i + 1
        );
        check("send", hypercall::evtchn_send(port));
        if crash_after == Some(i + 1) {
            println!("pingpong: pong: crashing on purpose after {} rounds", i + 1);
            crash();
        }
    }
}

fn crash() {
    // SAFETY: not safe at all, on purpose: a write through a null pointer.
    unsafe { core::ptr::write_volatile(core::hint::black_box(0x10 as *mut u64), 0xdead) };
}

/// After the last round nothing more may arrive.
async fn settle(port: Port, counter: &AtomicU64, rounds: u64, side: &str) {
    sleep(Duration::from_millis(20)).await;
    let got = counter.load(Ordering::SeqCst);
    assert!(
        got == rounds && !events::is_latched(port),
        "pingpong FAILED: {side}: {got} events after {rounds} rounds (duplicated event)"
    );
}

/// Checks on a channel of our own: a masked port's event stays pending and is delivered
/// on unmask; closing one end leaves the other unbound.
fn mask_and_close() -> Port {
    let a = hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .unwrap_or_else(|e| panic!("pingpong FAILED: alloc_unbound: {e}"));
    let b = hypercall::evtchn_bind_interdomain(DOMID_SELF, a)
        .unwrap_or_else(|e| panic!("pingpong FAILED: bind_interdomain: {e}"));
    let st = hypercall::evtchn_status(DOMID_SELF, a);
    println!("pingpong: loopback: ports {a} and {b}; status of {a}: {st:?}");
    events::bind(b, &count_pong);
    // Xen notifies the binding end once, in case an event was sent to the unbound port
    // (`evtchn_bind_interdomain`): that one is not part of the test.
    events::take_latched(b);
    PONG_RX.store(0, Ordering::SeqCst);

    events::mask(b);
    check("send", hypercall::evtchn_send(a));
    let (pending, rx, latched) = (
        events::is_pending(b),
        PONG_RX.load(Ordering::SeqCst),
        events::is_latched(b),
    );
    assert!(
        pending && rx == 0 && !latched,
        "pingpong FAILED: an event on a masked port was delivered or not left pending (pending {pending}, received {rx}, latched {latched})"
    );
    events::unmask(b);
    assert!(
        PONG_RX.swap(0, Ordering::SeqCst) == 1 && events::take_latched(b),
        "pingpong FAILED: unmask did not deliver the pending event"
    );
    println!("pingpong: a masked event stayed pending and was delivered on unmask");

    events::unbind(b);
    check("close", hypercall::evtchn_close(b));
    match hypercall::evtchn_status(DOMID_SELF, a) {
        Ok(s) if matches!(s.state, ChannelState::Unbound { .. }) => {
            println!("pingpong: closed port {b}: port {a} is unbound again ({s:?})")
        }
        other => panic!("pingpong FAILED: after closing {b}, port {a} is {other:?}"),
    }
    check("close", hypercall::evtchn_close(a));
    a
}

/// Both roles in this domain, as two tasks, through the same rendezvous as two domains
/// (pong starts first and retries until ping has allocated the port).
fn loopback(rounds: u64) {
    // VIRQ_TIMER's port first, so that the port the checks free is the lowest free
    // one: the port ping allocates next, which pong is told to bind.
    if let Err(e) = libos::timer::init() {
        panic!("pingpong FAILED: binding VIRQ_TIMER: {e}");
    }
    let port = mask_and_close();
    let start = time::now();
    executor::spawn(pong_side(DOMID_SELF, port, rounds, None));
    let end = executor::block_on(async move {
        sleep(Duration::from_millis(20)).await;
        ping_side(alloc_for(DOMID_SELF), DOMID_SELF, rounds).await
    });
    executor::run();
    let elapsed = time::now() - start;
    if !matches!(end, End::Done) {
        report(end, DOMID_SELF);
        panic!("pingpong FAILED: loopback: a side went away");
    }
    let (upcalls, evs) = events::stats();
    println!(
        "pingpong: OK: loopback, {rounds} rounds: ping sent {rounds} received {}, pong received {} sent {rounds}; no lost or duplicated event; {} ns per round trip; {upcalls} upcalls, {evs} events, {} blocks",
        PING_RX.load(Ordering::SeqCst),
        PONG_RX.load(Ordering::SeqCst),
        elapsed.as_nanos() / u128::from(rounds.max(1)),
        executor::blocks()
    );
}

/// Allocates a port for `peer`.
fn alloc_for(peer: domid_t) -> Port {
    let port = hypercall::evtchn_alloc_unbound(DOMID_SELF, peer)
        .unwrap_or_else(|e| panic!("pingpong FAILED: alloc_unbound for domain {peer}: {e}"));
    println!("pingpong: ping: port {port} allocated for domain {peer}; waiting for its hello");
    events::bind(port, &count_ping);
    port
}

/// The node where ping publishes its port, under its home.
const PORT_NODE: &str = "data/pingpong-port";

/// Publishes `port` in our `data/pingpong-port`, readable by `peer` (we own it; other
/// domains have no access), if there is a xenstore.
async fn publish(port: Port, peer: domid_t) {
    if !libos::xenbus::available() {
        return;
    }
    let r = async {
        let xs = libos::xenbus::store()?;
        let own = xs.read_string(NO_TX, "domid").await?;
        xs.write_str(NO_TX, PORT_NODE, &format!("{port}")).await?;
        let (owner, reader) = (format!("n{own}"), format!("r{peer}"));
        xs.set_perms(NO_TX, PORT_NODE, &[&owner, &reader]).await
    }
    .await;
    match r {
        Ok(()) => println!("pingpong: ping: port {port} published in {PORT_NODE}"),
        Err(e) => panic!("pingpong FAILED: ping: publishing port {port} in {PORT_NODE}: {e:?}"),
    }
}

/// The port `peer` published (waiting for it to appear), or, with no xenstore, 1.
async fn published_port(peer: domid_t) -> Port {
    if !libos::xenbus::available() {
        return 1;
    }
    let path = format!("/local/domain/{peer}/{PORT_NODE}");
    let since = time::now();
    loop {
        let r = match libos::xenbus::store() {
            Ok(xs) => xs.read_string(NO_TX, &path).await,
            Err(e) => Err(e),
        };
        match r.map(|v| v.trim().parse::<Port>()) {
            Ok(Ok(port)) => return port,
            Ok(Err(_)) => panic!("pingpong FAILED: pong: {path} is not a port number"),
            Err(e) if since.elapsed() > Duration::from_secs(30) => {
                panic!("pingpong FAILED: pong: domain {peer} never published {path}: {e:?}")
            }
            Err(_) => sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Waits for `peer`'s hello on `port`, plays `rounds` rounds.
async fn ping_side(port: Port, peer: domid_t, rounds: u64) -> End {
    // The rendezvous: pong binds, then says hello; only then do the rounds start, so
    // the event Xen sends pong's end when it binds cannot be taken for a ping.
    if with_timeout(Duration::from_secs(30), executor::wait_event(port))
        .await
        .is_err()
    {
        panic!("pingpong FAILED: ping: domain {peer} never bound port {port} and said hello");
    }
    PING_RX.store(0, Ordering::SeqCst);
    println!("pingpong: ping: domain {peer} bound port {port} and said hello");
    let start = time::now();
    let end = ping(port, rounds).await;
    if matches!(end, End::Done) {
        settle(port, &PING_RX, rounds, "ping").await;
        println!(
            "pingpong: ping: {rounds} rounds with domain {peer}: sent {rounds} received {}; {} ns per round trip",
            PING_RX.load(Ordering::SeqCst),
            (time::now() - start).as_nanos() / u128::from(rounds.max(1))
        );
    }
    end
}

fn report(end: End, peer: domid_t) {
    match end {
        End::Done => {}
        End::PeerClosed(n) => println!(
            "pingpong: ping: saw the port closed by domain {peer} after {n} rounds (received {})",
            PING_RX.load(Ordering::SeqCst)
        ),
        End::PeerSilent(n) => println!(
            "pingpong: ping: domain {peer} silent for {GIVE_UP:?} after {n} rounds, port still bound: peer gone (received {})",
            PING_RX.load(Ordering::SeqCst)
        ),
    }
}

/// Binds `peer`'s port `remote_port` (retrying until it exists), says hello, answers
/// `rounds` pings.
async fn pong_side(peer: domid_t, remote_port: Port, rounds: u64, crash_after: Option<u64>) {
    let since = time::now();
    let mut tries = 1;
    let port = loop {
        // The ping side may not have allocated its port yet.
        match hypercall::evtchn_bind_interdomain(peer, remote_port) {
            Ok(p) => break p,
            Err(e) if since.elapsed() > Duration::from_secs(30) => {
                panic!(
                    "pingpong FAILED: pong: cannot bind port {remote_port} of domain {peer}: {e}"
                )
            }
            Err(_) => sleep(Duration::from_millis(10)).await,
        }
        tries += 1;
    };
    println!(
        "pingpong: pong: bound port {remote_port} of domain {peer} as port {port} (attempt {tries})"
    );
    events::bind(port, &count_pong);
    // Xen notified our new port when we bound it (see `ping_side`): drop that one,
    // then tell ping we are ready.
    events::take_latched(port);
    PONG_RX.store(0, Ordering::SeqCst);
    check("send hello", hypercall::evtchn_send(port));
    pong(port, rounds, crash_after).await;
    settle(port, &PONG_RX, rounds, "pong").await;
    println!(
        "pingpong: pong: {rounds} rounds with domain {peer}: received {} sent {rounds}",
        PONG_RX.load(Ordering::SeqCst)
    );
}

fn main() {
    let a = args();
    match (a.role, a.peer) {
        ("loopback", _) => loopback(a.rounds),
        ("ping", Some(peer)) => {
            // Before the executor binds VIRQ_TIMER: a fresh domain's first port (1) is
            // the one pong is told by default.
            let port = alloc_for(peer);
            let end = executor::block_on(async {
                publish(port, peer).await;
                ping_side(port, peer, a.rounds).await
            });
            if matches!(end, End::Done) {
                println!(
                    "pingpong: OK: ping, {} rounds with domain {peer}; no lost or duplicated event",
                    a.rounds
                );
            }
            report(end, peer);
        }
        ("pong", Some(peer)) => {
            executor::block_on(async {
                let port = match a.port {
                    Some(p) => p,
                    None => published_port(peer).await,
                };
                pong_side(peer, port, a.rounds, a.crash_after).await
            });
            println!(
                "pingpong: OK: pong, {} rounds with domain {peer}; no lost or duplicated event",
                a.rounds
            );
        }
        (role, None) => panic!("pingpong: {role} needs peer=<domid>"),
        (role, _) => panic!("pingpong: unknown role {role}"),
    }
}

libos::main!(main);
