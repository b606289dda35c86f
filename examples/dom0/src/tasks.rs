//! dom0's back-end tasks: dom0's loop is not an executor; it polls every live task
//! whenever something happened (an event, store traffic), with a waker that does
//! nothing, and a task looks at its rings' event latches and its front end's state
//! watch each time it is polled.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(core::ptr::null(), &VTABLE),
        |_| {},
        |_| {},
        |_| {},
    );
    // SAFETY: every function of the table ignores the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
}

/// Polls `f` until it is done, pumping nothing: for store requests over the loopback,
/// which complete within the poll that sends them.
pub fn now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..64 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A task gave the loop a turn with work still to do ([`yield_now`]).
static YIELDED: AtomicBool = AtomicBool::new(false);

/// Lets dom0's loop (the stores, the consoles, the other devices) run before this
/// task goes on: a front end that keeps its ring busy would otherwise keep its task,
/// and dom0, to itself.
pub async fn yield_now() {
    let mut once = false;
    poll_fn(|_| {
        if once {
            Poll::Ready(())
        } else {
            once = true;
            YIELDED.store(true, Ordering::Relaxed);
            Poll::Pending
        }
    })
    .await
}

/// Live tasks.
#[derive(Default)]
pub struct Tasks {
    tasks: Vec<Task>,
}

impl Tasks {
    pub fn spawn(&mut self, f: impl Future<Output = ()> + 'static) {
        self.tasks.push(Box::pin(f));
    }

    /// Polls every task once; drops those that are done. Returns whether one has more
    /// to do at once (the loop should come back without waiting for an event).
    pub fn poll(&mut self) -> bool {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        YIELDED.store(false, Ordering::Relaxed);
        self.tasks
            .retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
        YIELDED.load(Ordering::Relaxed)
    }
}
