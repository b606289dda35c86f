//! The console back end against consfront over the in-memory platform: dom0 and the
//! domUs in separate threads where the behaviour is about concurrency, in one thread
//! where it is about exact round-by-round bounds.

use drivers_back::console::{Consoles, Round, ESCAPE, INPUT_QUEUE_MAX, ROUND_BUDGET};
use drivers_front::consfront::Consfront;
use pv_core::byte_ring::ByteRing;
use pv_core::mem_platform::{MemDomain, MemPage, MemWorld};
use pv_core::platform::{EventChannel, ForeignMemory, GrantTable, PlatformError, Port, SharePage};
use std::mem::offset_of;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use xen_sys::{xencons_interface, GNTTAB_RESERVED_CONSOLE};

const CONSOLE: u32 = GNTTAB_RESERVED_CONSOLE;

/// A domU as the toolstack builds it: a console page granted to dom0 in the reserved
/// entry, and a port left unbound for dom0 (what start_info hands the guest).
struct Guest {
    dom: MemDomain,
    page: MemPage,
    port: Port,
}

impl Guest {
    fn new(w: &Arc<MemWorld>, id: u16) -> Self {
        let dom = w.domain(id);
        let page = dom.alloc_page().unwrap();
        dom.grant_at(CONSOLE, 0, &page, false).unwrap();
        let port = dom.alloc_unbound(0).unwrap();
        Guest { dom, page, port }
    }

    fn front(&self) -> Consfront<'_, &MemDomain> {
        Consfront::new(self.page.page(), self.port, &self.dom)
    }

    fn out_cons(&self) -> u32 {
        self.page
            .page()
            .load_u32(offset_of!(xencons_interface, out_cons))
    }
}

/// Lines written to dom0's serial line.
#[derive(Default)]
struct Serial {
    lines: Vec<String>,
}

impl Serial {
    fn sink(&mut self) -> impl FnMut(&[u8]) + '_ {
        |l: &[u8]| self.lines.push(String::from_utf8(l.to_vec()).unwrap())
    }

    /// The text of the lines of the domain named `name`, in order.
    fn of(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}| ");
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| l.strip_suffix('\n').unwrap())
            .collect()
    }
}

/// Sets the flag when dropped, also while unwinding from a failed assertion.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes all of `data` like `write_all`, but gives up when `stop` is set. True if all
/// was written.
fn write_until(
    front: &mut Consfront<'_, &MemDomain>,
    g: &Guest,
    mut data: &[u8],
    stop: &AtomicBool,
) -> bool {
    while !data.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let n = front.write(data).unwrap();
        data = &data[n..];
        if n == 0 {
            g.dom.wait_timeout(g.port, Duration::from_millis(5));
        }
    }
    true
}

fn connect(consoles: &mut Consoles<MemDomain>, g: &Guest, name: &str) {
    consoles.connect(g.dom.id(), name, CONSOLE, g.port).unwrap();
}

#[test]
fn output_of_two_domains_arrives_complete_and_in_order_and_input_reaches_them() {
    const LINES: usize = 300;
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let guests = [Guest::new(&w, 1), Guest::new(&w, 2)];
    let names = ["alpha", "beta"];
    let typed = ["hello alpha\n", "hi beta\n"];
    let mut consoles = Consoles::new(dom0.clone());
    for (g, name) in guests.iter().zip(names) {
        connect(&mut consoles, g, name);
    }
    let line = |name: &str, i: usize| format!("{name} line {i:05} {}", "=".repeat(i % 40));
    let total: usize = (0..LINES).map(|i| line("alpha", i).len() + 1).sum();
    assert!(
        total > 5 * ByteRing::CONSOLE_OUT.size(),
        "several ring sizes"
    );

    let mut serial = Serial::default();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // If an assertion below fails, the domUs must not wait forever for dom0.
        let _stop_on_exit = StopOnDrop(&stop);
        let stop = &stop;
        let mut workers = Vec::new();
        for (g, (name, typed)) in guests.iter().zip(names.iter().zip(typed)) {
            workers.push(s.spawn(move || {
                let mut front = g.front();
                for i in 0..LINES {
                    write_until(
                        &mut front,
                        g,
                        format!("{}\n", line(name, i)).as_bytes(),
                        stop,
                    );
                }
                // Then read what the operator typed for us.
                let mut got = Vec::new();
                let mut buf = [0u8; 64];
                while got.len() < typed.len() && !stop.load(Ordering::Relaxed) {
                    let n = front.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if n == 0 {
                        g.dom.wait_timeout(g.port, Duration::from_millis(5));
                    }
                }
                String::from_utf8(got).unwrap()
            }));
        }
        // dom0: the operator types for alpha (focused first), switches, types for beta.
        let mut input = typed[0].as_bytes().to_vec();
        input.extend_from_slice(&[ESCAPE; 3]);
        input.extend_from_slice(typed[1].as_bytes());
        consoles.input(&input, &mut serial.sink());
        assert_eq!(consoles.focus(), Some(2));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !workers.iter().all(|w| w.is_finished())
            || serial.of("alpha").len() + serial.of("beta").len() < 2 * LINES
        {
            assert!(Instant::now() < deadline, "console output stalled");
            let round = consoles.poll(&mut serial.sink());
            assert!(round.disconnected.is_empty());
            if !round.more {
                dom0.wait_any(Duration::from_millis(5));
            }
        }
        for (w, want) in workers.into_iter().zip(typed) {
            assert_eq!(w.join().unwrap(), want);
        }
    });
    assert_eq!(serial.lines[0], "[console input now goes to d2 beta]\n");
    for name in names {
        let want: Vec<String> = (0..LINES).map(|i| line(name, i)).collect();
        assert_eq!(
            serial.of(name),
            want,
            "{name}'s output complete and in order"
        );
    }
    assert_eq!(serial.lines.len(), 1 + 2 * LINES);
}

#[test]
fn a_flooding_domain_takes_at_most_the_budget_per_round() {
    let w = MemWorld::new();
    let (flooder, quiet) = (Guest::new(&w, 1), Guest::new(&w, 2));
    let mut consoles = Consoles::new(w.domain(0));
    connect(&mut consoles, &flooder, "flood");
    connect(&mut consoles, &quiet, "quiet");
    let mut serial = Serial::default();
    let flood = [b'f'; 4096];
    for round in 0..40 {
        // The flooder keeps its ring full; the quiet domain writes one line.
        flooder.front().write(&flood).unwrap();
        assert_eq!(ByteRing::CONSOLE_OUT.space(&flooder.page.page()), Ok(0));
        quiet
            .front()
            .write_all(format!("still here {round}\n").as_bytes())
            .unwrap();
        let before = flooder.out_cons();
        let r: Round = consoles.poll(&mut serial.sink());
        assert!(r.more);
        assert_eq!(
            flooder.out_cons().wrapping_sub(before) as usize,
            ROUND_BUDGET
        );
        // Room was made: the flooder, blocked in write_all, is woken.
        assert!(flooder.dom.wait_timeout(flooder.port, Duration::ZERO));
        assert_eq!(
            serial.of("quiet").last(),
            Some(&format!("still here {round}").as_str())
        );
    }
    assert_eq!(serial.of("quiet").len(), 40);
    // Flood lines have no newline: they were cut at 256 bytes, nothing lost.
    assert!(serial.of("flood").iter().all(|l| *l == "f".repeat(256)));
    assert_eq!(serial.of("flood").len(), 40 * ROUND_BUDGET / 256);
}

#[test]
fn a_domain_writing_without_pause_does_not_silence_another() {
    const QUIET_LINES: usize = 30;
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let (flooder, quiet) = (Guest::new(&w, 1), Guest::new(&w, 2));
    let mut consoles = Consoles::new(dom0.clone());
    connect(&mut consoles, &flooder, "flood");
    connect(&mut consoles, &quiet, "quiet");
    let stop = AtomicBool::new(false);
    let mut serial = Serial::default();
    let mut rounds = 0;
    let mut quiet_emitted = 0;
    thread::scope(|s| {
        // If an assertion below fails, the domUs must not wait forever for dom0.
        let _stop_on_exit = StopOnDrop(&stop);
        let f = s.spawn(|| {
            let mut front = flooder.front();
            let mut i = 0u64;
            while write_until(
                &mut front,
                &flooder,
                format!("flood {i}\n").as_bytes(),
                &stop,
            ) {
                i += 1;
            }
        });
        let q = s.spawn(|| {
            let mut front = quiet.front();
            for i in 0..QUIET_LINES {
                write_until(&mut front, &quiet, format!("quiet {i}\n").as_bytes(), &stop);
                // At most one line in the ring at a time: wait until it was taken.
                while ByteRing::CONSOLE_OUT.available(&quiet.page.page()) != Ok(0)
                    && !stop.load(Ordering::Relaxed)
                {
                    quiet.dom.wait_timeout(quiet.port, Duration::from_millis(5));
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !q.is_finished() || serial.of("quiet").len() < QUIET_LINES {
            assert!(Instant::now() < deadline, "quiet domain silenced");
            let quiet_ready = ByteRing::CONSOLE_OUT.available(&quiet.page.page()).unwrap();
            let flood_cons = flooder.out_cons();
            let r = consoles.poll(&mut serial.sink());
            rounds += 1;
            // Bounded: the flooder never gets more than its budget in a round...
            let flood_taken = flooder.out_cons().wrapping_sub(flood_cons) as usize;
            assert!(
                flood_taken <= ROUND_BUDGET,
                "round {rounds}: flooder got {flood_taken}"
            );
            // ...and whatever the quiet domain had written is out by the end of it.
            let now: usize = serial.of("quiet").iter().map(|l| l.len() + 1).sum();
            assert!(
                now - quiet_emitted >= quiet_ready,
                "round {rounds}: quiet line held back"
            );
            quiet_emitted = now;
            if !r.more {
                dom0.wait_any(Duration::from_millis(5));
            }
        }
        stop.store(true, Ordering::Relaxed);
        // Take the flooder's last line, written before it saw the stop.
        while !f.is_finished() || consoles.poll(&mut serial.sink()).output > 0 {
            consoles.poll(&mut serial.sink());
        }
    });
    let want: Vec<String> = (0..QUIET_LINES).map(|i| format!("quiet {i}")).collect();
    assert_eq!(serial.of("quiet"), want);
    let flood = serial.of("flood");
    assert!(
        flood.len() * 8 > 4 * ByteRing::CONSOLE_OUT.size(),
        "the flooder really flooded: {} lines",
        flood.len()
    );
    for (i, l) in flood.iter().enumerate() {
        assert_eq!(
            *l,
            format!("flood {i}"),
            "flood output complete and in order"
        );
    }
}

#[test]
fn corrupt_ring_disconnects_that_domain_only() {
    let w = MemWorld::new();
    let (bad, good) = (Guest::new(&w, 1), Guest::new(&w, 2));
    let mut consoles = Consoles::new(w.domain(0));
    connect(&mut consoles, &bad, "bad");
    connect(&mut consoles, &good, "good");
    let mut serial = Serial::default();
    bad.front().write(b"partial").unwrap();
    consoles.poll(&mut serial.sink());
    assert!(serial.lines.is_empty(), "partial line held");
    assert_eq!(bad.dom.map_count(CONSOLE), Some(1));

    // The bad domain claims 5000 bytes in its 2048-byte ring.
    let prod = offset_of!(xencons_interface, out_prod);
    bad.page
        .page()
        .store_u32(prod, bad.out_cons().wrapping_add(5000));
    good.front().write(b"still here\n").unwrap();
    let r = consoles.poll(&mut serial.sink());
    assert_eq!(r.disconnected, [1]);
    assert!(!consoles.is_connected(1));
    assert_eq!(consoles.domains().collect::<Vec<_>>(), [2]);
    assert_eq!(
        consoles.focus(),
        Some(2),
        "focus moved off the dead console"
    );
    assert_eq!(bad.dom.map_count(CONSOLE), Some(0), "ring unmapped");
    assert_eq!(bad.dom.end_grant(CONSOLE), Ok(()), "page free to reuse");
    assert_eq!(serial.of("bad"), ["partial"], "partial line flushed");
    assert!(serial
        .lines
        .contains(&"[d1 bad: console ring corrupt, disconnected]\n".to_string()));
    assert_eq!(serial.of("good"), ["still here"]);
    // dom0's end of the port is closed: the domU's port is unbound for dom0 again.
    assert!(w.domain(0).bind_interdomain(1, bad.port).is_ok());

    good.front().write(b"and more\n").unwrap();
    let r = consoles.poll(&mut serial.sink());
    assert!(r.disconnected.is_empty());
    assert_eq!(serial.of("good"), ["still here", "and more"]);

    // Corrupt input indices are caught when input is delivered.
    let in_cons = offset_of!(xencons_interface, in_cons);
    good.page.page().store_u32(in_cons, 0xdead_0000);
    consoles.input(b"x", &mut serial.sink());
    assert!(!consoles.is_connected(2));
    assert_eq!(consoles.focus(), None);
    assert_eq!(good.dom.map_count(CONSOLE), Some(0));
}

#[test]
fn connect_errors_leave_nothing_mapped() {
    let w = MemWorld::new();
    let g = Guest::new(&w, 1);
    let mut consoles = Consoles::new(w.domain(0));
    assert_eq!(
        consoles.connect(1, "g", 77, g.port),
        Err(PlatformError::Invalid),
        "no such grant"
    );
    // A grant to someone else.
    let other = w.domain(3).alloc_page().unwrap();
    let gref = w.domain(3).grant(4, &other, false).unwrap();
    let p3 = w.domain(3).alloc_unbound(0).unwrap();
    assert_eq!(
        consoles.connect(3, "o", gref, p3),
        Err(PlatformError::Denied)
    );
    // A port not left unbound for dom0: the mapping made first is released.
    let wrong_port = g.dom.alloc_unbound(5).unwrap();
    assert_eq!(
        consoles.connect(1, "g", CONSOLE, wrong_port),
        Err(PlatformError::Invalid)
    );
    assert_eq!(g.dom.map_count(CONSOLE), Some(0));
    assert!(!consoles.is_connected(1));
    connect(&mut consoles, &g, "g");
    assert_eq!(
        consoles.connect(1, "g", CONSOLE, g.port),
        Err(PlatformError::Busy)
    );
    assert_eq!(g.dom.map_count(CONSOLE), Some(1));
}

#[test]
fn disconnect_prints_what_is_left_in_the_ring_and_unmaps() {
    let w = MemWorld::new();
    let g = Guest::new(&w, 4);
    let mut consoles = Consoles::new(w.domain(0));
    connect(&mut consoles, &g, "web");
    let mut serial = Serial::default();
    g.front().write(b"one\ntwo").unwrap();
    consoles.poll(&mut serial.sink());
    g.front().write(b" three").unwrap();
    assert_eq!(consoles.disconnect(4, &mut serial.sink()), Ok(()));
    assert_eq!(
        serial.of("web"),
        ["one", "two three"],
        "output still in the ring and the partial line come out, nothing is lost"
    );
    assert_eq!(g.dom.map_count(CONSOLE), Some(0));
    assert_eq!(
        consoles.disconnect(4, &mut serial.sink()),
        Err(PlatformError::Invalid)
    );
}

#[test]
fn triple_ctrl_a_moves_input_between_domains() {
    let w = MemWorld::new();
    let gs = [Guest::new(&w, 1), Guest::new(&w, 2), Guest::new(&w, 3)];
    let mut consoles = Consoles::new(w.domain(0));
    for (g, name) in gs.iter().zip(["a", "b", "c"]) {
        connect(&mut consoles, g, name);
    }
    let mut serial = Serial::default();
    let read_all = |g: &Guest| {
        let mut buf = [0u8; 2048];
        let n = g.front().read(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(consoles.focus(), Some(1));
    consoles.input(b"to a \x01 x\x01\x01y", &mut serial.sink());
    assert_eq!(read_all(&gs[0]), b"to a \x01 x\x01\x01y");
    let switch = [ESCAPE; 3];
    for (want, notice) in [(2, "d2 b"), (3, "d3 c"), (1, "d1 a"), (2, "d2 b")] {
        consoles.input(&switch, &mut serial.sink());
        assert_eq!(consoles.focus(), Some(want));
        assert_eq!(
            serial.lines.last().unwrap(),
            &format!("[console input now goes to {notice}]\n")
        );
    }
    // Ctrl-A split across calls still counts; held ones are released in order.
    consoles.input(b"\x01\x01", &mut serial.sink());
    consoles.input(b"\x01for c", &mut serial.sink());
    assert_eq!(consoles.focus(), Some(3));
    consoles.input(b"\x01", &mut serial.sink());
    consoles.input(b"!", &mut serial.sink());
    assert_eq!(read_all(&gs[2]), b"for c\x01!");
    assert!(read_all(&gs[0]).is_empty());
    assert!(read_all(&gs[1]).is_empty());
    assert_eq!(serial.of("a").len() + serial.of("b").len(), 0);
}

#[test]
fn input_beyond_the_ring_waits_for_the_domain_to_read() {
    let w = MemWorld::new();
    let g = Guest::new(&w, 1);
    let mut consoles = Consoles::new(w.domain(0));
    connect(&mut consoles, &g, "g");
    let mut serial = Serial::default();
    let typed: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    consoles.input(&typed, &mut serial.sink());
    assert!(g.dom.wait_timeout(g.port, Duration::ZERO), "input notified");
    let in_size = ByteRing::CONSOLE_IN.size();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let n = g.front().read(&mut buf).unwrap();
    assert_eq!(n, in_size, "the ring took what fits");
    got.extend_from_slice(&buf[..n]);
    while got.len() < typed.len() {
        let r = consoles.poll(&mut serial.sink());
        assert!(r.input > 0, "the rest follows as the domain reads");
        let n = g.front().read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, typed);
    // A domain that does not read: typed input beyond the queue limit is dropped.
    consoles.input(
        &vec![b'z'; in_size + INPUT_QUEUE_MAX + 100],
        &mut serial.sink(),
    );
    let mut total = 0;
    loop {
        let n = g.front().read(&mut buf).unwrap();
        consoles.poll(&mut serial.sink());
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, INPUT_QUEUE_MAX);
}

#[test]
fn consoles_disconnect_releases_grants_for_the_domain() {
    // The domU tears down after dom0 let go: its grant can be ended, its port closed.
    let w = MemWorld::new();
    let g = Guest::new(&w, 9);
    let mut consoles = Consoles::new(w.domain(0));
    connect(&mut consoles, &g, "g");
    assert_eq!(g.dom.end_grant(CONSOLE), Err(PlatformError::Busy));
    let port = consoles.port(9).unwrap();
    consoles.disconnect(9, &mut |_: &[u8]| {}).unwrap();
    assert_eq!(g.dom.end_grant(CONSOLE), Ok(()));
    // dom0's port is gone: a notify on it goes nowhere.
    w.domain(0).notify(port);
    assert!(w.domain(0).map(9, CONSOLE, false).is_err());
}
