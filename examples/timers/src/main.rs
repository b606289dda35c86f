//! timers: tasks sleeping different durations, plus a periodic one, on libos's executor.
//! Each firing is printed with its virtual time; at the end the guest checks what libos
//! promises: no timer fires early; each task's timers fire in its own order; and a
//! timer fires after one with a later deadline only if both were due at once (a late
//! wake-up, as under Xen's emulated TSC, finds several due, and the tasks they wake run
//! in the executor's order). Then that the wall clock advanced with the monotonic
//! clock; an OK line, and it powers off.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use libos::executor::{self, spawn};
use libos::time::{self, Instant};
use libos::timer::sleep_until;
use libos::{events, hypercall, println};
use xen_sys::{RUNSTATE_running, DOMID_SELF};

/// One-shot sleeps, in ms, in spawn order (not deadline order).
const ONE_SHOTS: [u64; 4] = [30, 10, 20, 5];
/// The periodic task: every 7 ms, 6 times (no deadline equal to a one-shot's).
const PERIOD_MS: u64 = 7;
const PERIODS: u64 = 6;

/// (deadline, when it fired), in firing order.
type Log = Rc<RefCell<Vec<(Instant, Instant)>>>;

fn fired(log: &Log, start: Instant, name: &str, deadline: Instant) {
    let now = time::now();
    println!(
        "timers: {name} fired at +{} us (deadline +{} us, {} us late)",
        (now - start).as_micros(),
        (deadline - start).as_micros(),
        (now - deadline).as_micros()
    );
    log.borrow_mut().push((deadline, now));
}

fn main() {
    vcpu_calls();
    let wall0 = time::wall_clock();
    let start = time::now();
    println!(
        "timers: system time {start}, wall clock {}.{:06} s since the epoch",
        wall0.as_secs(),
        wall0.subsec_micros()
    );
    let log: Log = Rc::default();
    for ms in ONE_SHOTS {
        let log = log.clone();
        spawn(async move {
            let deadline = start + Duration::from_millis(ms);
            sleep_until(deadline).await;
            fired(&log, start, &alloc::format!("sleep {ms} ms"), deadline);
        });
    }
    let periodic = log.clone();
    spawn(async move {
        for k in 1..=PERIODS {
            let deadline = start + Duration::from_millis(PERIOD_MS * k);
            sleep_until(deadline).await;
            fired(&periodic, start, &alloc::format!("periodic #{k}"), deadline);
        }
    });
    executor::run();

    let log = log.borrow();
    let total = ONE_SHOTS.len() + PERIODS as usize;
    assert_eq!(log.len(), total, "every timer fired once");
    // An earlier deadline after a later one: only if it was already due when the later
    // one fired. (The periodic task's own order is its loop's.)
    for (i, &(d_a, at_a)) in log.iter().enumerate() {
        for &(d_b, _) in &log[i + 1..] {
            assert!(
                d_b >= d_a || d_b <= at_a,
                "timers FAILED: a timer due at +{} us fired after one due at +{} us, which fired at +{} us, before it was due",
                (d_b - start).as_micros(),
                (d_a - start).as_micros(),
                (at_a - start).as_micros()
            );
        }
    }
    let mut max_late = Duration::ZERO;
    for &(deadline, at) in log.iter() {
        assert!(at >= deadline, "timers FAILED: a timer fired early");
        max_late = max_late.max(at - deadline);
    }
    // The wall clock is the monotonic clock plus a base: they advance together.
    let mono = time::now() - start;
    let wall = time::wall_clock().saturating_sub(wall0);
    let skew = mono.abs_diff(wall);
    assert!(
        skew < Duration::from_millis(1),
        "timers FAILED: wall clock advanced {wall:?} while system time advanced {mono:?}"
    );
    let (upcalls, events) = events::stats();
    println!(
        "timers: OK: {total} timers fired, none early, in deadline order except those due at once (latest by {} us); wall clock advanced with system time; {upcalls} upcalls, {events} events, {} blocks",
        max_late.as_micros(),
        executor::blocks()
    );
}

/// vCPU 0 as `vcpu_op` and `sched_op` see it: up, running, and `SCHEDOP_poll` on a
/// silent port returns at its timeout (give or take Xen's 50 us timer slop).
fn vcpu_calls() {
    assert_eq!(
        hypercall::vcpu_is_up(0),
        Ok(true),
        "timers FAILED: vcpu_is_up(0)"
    );
    let rs = hypercall::vcpu_get_runstate_info(0)
        .unwrap_or_else(|e| panic!("timers FAILED: get_runstate_info: {e}"));
    assert_eq!(
        rs.state, RUNSTATE_running as i32,
        "timers FAILED: vCPU 0 not running"
    );
    let port = hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .unwrap_or_else(|e| panic!("timers FAILED: alloc_unbound: {e}"));
    let before = time::now();
    let timeout = before + Duration::from_millis(2);
    let r = hypercall::sched_poll(&[port], timeout.as_nanos());
    let took = time::now() - before;
    assert!(
        r.is_ok() && took >= Duration::from_micros(1900),
        "timers FAILED: SCHEDOP_poll with a 2 ms timeout: {r:?} after {took:?}"
    );
    let _ = hypercall::evtchn_close(port);
    println!(
        "timers: vCPU 0 up and running ({} us running so far); SCHEDOP_poll timed out after {} us",
        rs.time[RUNSTATE_running as usize] / 1000,
        took.as_micros()
    );
}

libos::main!(main);
