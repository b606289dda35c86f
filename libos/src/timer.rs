//! Timers keyed by deadline, on Xen's one-shot vCPU timer (`xen.h`: `set_timer_op`;
//! `vcpu.h`: `VCPUOP_stop_periodic_timer`; `VIRQ_TIMER`), and the [`sleep`] futures.
//!
//! Deadlines wait in a queue ordered by (deadline, arrival). Before the executor
//! blocks, [`arm`] programs `set_timer_op` with the earliest; `VIRQ_TIMER`, bound
//! through the event dispatcher, only raises a flag. The executor then, outside the
//! upcall, wakes every timer whose deadline has passed by [`crate::time::now`], in
//! deadline order. Xen may fire a little early (its timer slop): such a timer is not
//! expired yet and is simply armed again, so a sleep never ends before its deadline.

use alloc::collections::BTreeMap;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use spin::{Mutex, Once};
use xen_sys::VIRQ_TIMER;

use crate::events::{self, Port};
use crate::hypercall::{self, XenError};
use crate::time::{self, Instant};

/// (deadline in ns, arrival number) -> the waker of the sleeping task. Only touched
/// outside upcall context (by futures and the executor), so the lock is never held
/// when an upcall could want it.
static QUEUE: Mutex<BTreeMap<(u64, u64), Waker>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
/// `VIRQ_TIMER` arrived since [`take_fired`] last looked.
static FIRED: AtomicBool = AtomicBool::new(false);
/// The deadline Xen's one-shot timer holds (`u64::MAX`: none, or already fired).
static ARMED: AtomicU64 = AtomicU64::new(u64::MAX);
static PORT: Once<Result<Port, XenError>> = Once::new();

fn on_timer(_: Port) {
    // The one-shot timer is spent: the next `arm` programs it again.
    ARMED.store(u64::MAX, Ordering::SeqCst);
    FIRED.store(true, Ordering::SeqCst);
}

/// Binds `VIRQ_TIMER` (once) and stops the 10 ms periodic timer Xen gives every PV
/// vCPU, which would otherwise wake us for nothing; returns the timer's port.
pub fn init() -> Result<Port, XenError> {
    *PORT.call_once(|| {
        if let Err(e) = hypercall::vcpu_stop_periodic_timer(0) {
            log::warn!("timer: cannot stop the periodic timer ({e}): spurious wake-ups");
        }
        let port = hypercall::evtchn_bind_virq(VIRQ_TIMER, 0)?;
        events::bind(port, &on_timer);
        Ok(port)
    })
}

/// Whether `VIRQ_TIMER` arrived since the last call (clears the flag).
pub(crate) fn take_fired() -> bool {
    FIRED.swap(false, Ordering::SeqCst)
}

pub(crate) fn fired() -> bool {
    FIRED.load(Ordering::SeqCst)
}

/// The earliest deadline waiting, if any.
pub fn next_deadline() -> Option<Instant> {
    QUEUE
        .lock()
        .first_key_value()
        .map(|(&(d, _), _)| Instant::from_nanos(d))
}

/// Programs Xen's one-shot timer with the earliest deadline, unless it already holds
/// it. With no deadline, a timer still armed is left to fire (a harmless wake-up).
pub fn arm() -> Result<(), XenError> {
    let Some(d) = next_deadline() else {
        return Ok(());
    };
    let d = d.as_nanos();
    if ARMED.load(Ordering::SeqCst) != d {
        // set_timer_op(0) would cancel: a deadline of 0 has passed anyway, so 1 does.
        hypercall::set_timer_op(d.max(1))?;
        ARMED.store(d, Ordering::SeqCst);
    }
    Ok(())
}

/// Wakes, in deadline order, every timer whose deadline is at or before `now`; returns
/// how many.
pub(crate) fn expire(now: Instant) -> usize {
    let mut woken = 0;
    loop {
        let waker = {
            let mut q = QUEUE.lock();
            match q.first_entry() {
                Some(e) if e.key().0 <= now.as_nanos() => e.remove(),
                _ => break,
            }
        };
        // Outside the lock: waking may poll nothing, but stays cheap and re-entrant.
        waker.wake();
        woken += 1;
    }
    woken
}

/// A future that completes at its deadline (never before).
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    key: Option<(u64, u64)>,
}

/// Sleeps for `d`.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(time::now() + d)
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline.as_nanos();
        let expired = time::now() >= self.deadline;
        let mut q = QUEUE.lock();
        match self.key {
            // The executor expired it (timers are woken in deadline order), or it is
            // polled past its deadline with nothing earlier still waiting: done.
            Some(k) if expired && q.first_key_value().is_none_or(|(&first, _)| first >= k) => {
                q.remove(&k);
                self.key = None;
                return Poll::Ready(());
            }
            Some(k) => match q.get_mut(&k) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => w.clone_from(cx.waker()),
                None => {
                    q.insert(k, cx.waker().clone());
                }
            },
            None => {
                // Even a deadline that already passed (the domain was not running)
                // goes through the queue, and the executor's next round expires the
                // timers in deadline order: a sleeper polled late must not overtake
                // one whose deadline came first.
                let k = (deadline, NEXT.fetch_add(1, Ordering::Relaxed));
                q.insert(k, cx.waker().clone());
                self.key = Some(k);
                if expired {
                    FIRED.store(true, Ordering::SeqCst);
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            QUEUE.lock().remove(&k);
        }
    }
}
