//! A small single-threaded async executor for a one-vCPU PV guest: [`spawn`],
//! [`block_on`], [`run`], and the futures [`wait_event`], [`with_timeout`],
//! [`yield_now`] (with [`crate::timer::sleep`]).
//!
//! Wakers are driven by events and timers: a waker only marks its task (with a wake
//! sequence number, so tasks run in the order they were woken: timers in deadline
//! order) and is safe to call from an event handler. Each round the executor wakes
//! expired timers and the waiters of ports whose events were latched, polls the woken
//! tasks in wake order, and when nothing is left to do idles the Xen way
//! (`sched.h`): mask events, check once more for work, arm the one-shot timer, then
//! `SCHEDOP_block`, which re-enables delivery and blocks atomically, so an event
//! arriving in between is never missed. Never a busy loop.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use spin::Mutex;

use crate::events::{self, Port};
use crate::hypercall;
use crate::time;
use crate::timer::{self, Sleep};

/// Some task was woken since the executor last looked.
static WOKEN: AtomicBool = AtomicBool::new(false);
/// Wake order.
static SEQ: AtomicU64 = AtomicU64::new(1);
/// `block_on`/`run` is running (they do not nest).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Times the executor blocked in `SCHEDOP_block` (statistics).
static BLOCKS: AtomicU64 = AtomicU64::new(0);

/// A task's wake state: 0, or the sequence number of its first wake since its last
/// poll.
struct Header {
    woken: AtomicU64,
}

impl Header {
    fn new_woken() -> Arc<Header> {
        Arc::new(Header {
            woken: AtomicU64::new(SEQ.fetch_add(1, Ordering::Relaxed)),
        })
    }
}

impl Wake for Header {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    /// Atomics only: callable from an event handler.
    fn wake_by_ref(self: &Arc<Self>) {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .woken
            .compare_exchange(0, seq, Ordering::SeqCst, Ordering::SeqCst);
        WOKEN.store(true, Ordering::SeqCst);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    header: Arc<Header>,
    /// A background service (see [`spawn_daemon`]): does not keep [`run`] going.
    daemon: bool,
}

/// Tasks and port waiters; only used outside upcall context, by the one vCPU.
struct State {
    tasks: Vec<Task>,
    waiters: BTreeMap<Port, Waker>,
}

/// The executor's state in a static.
struct Local(Mutex<State>);
// SAFETY: libos runs on one vCPU, and `State` is only touched outside upcall context
// (event handlers never spawn nor register waiters), so its non-Send futures are never
// reached from two contexts at once.
unsafe impl Sync for Local {}

static STATE: Local = Local(Mutex::new(State {
    tasks: Vec::new(),
    waiters: BTreeMap::new(),
}));

/// Spawns `future` as a task; it runs at the next [`block_on`] or [`run`] round.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    push(Box::pin(future), false);
}

/// Spawns a background service (libos's own `control/shutdown` watcher): it runs
/// while the executor runs, but [`run`] returns once only daemons are left.
pub fn spawn_daemon(future: impl Future<Output = ()> + 'static) {
    push(Box::pin(future), true);
}

fn push(future: Pin<Box<dyn Future<Output = ()>>>, daemon: bool) {
    STATE.0.lock().tasks.push(Task {
        future,
        header: Header::new_woken(),
        daemon,
    });
    WOKEN.store(true, Ordering::SeqCst);
}

/// Tasks spawned and not finished (daemons aside).
pub fn tasks() -> usize {
    STATE.0.lock().tasks.iter().filter(|t| !t.daemon).count()
}

/// Times the executor has blocked so far.
pub fn blocks() -> u64 {
    BLOCKS.load(Ordering::Relaxed)
}

/// Runs spawned tasks until `future` completes; returns its output.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut out = None;
    {
        let mut main = core::pin::pin!(async {
            out = Some(future.await);
        });
        drive(Some(main.as_mut()));
    }
    out.expect("the main future completed")
}

/// Runs spawned tasks until none is left (daemons aside).
pub fn run() {
    drive(None);
}

fn drive(mut main: Option<Pin<&mut (dyn Future<Output = ()> + '_)>>) {
    assert!(
        !RUNNING.swap(true, Ordering::SeqCst),
        "block_on/run do not nest (called from a task?)"
    );
    assert!(
        events::available(),
        "the executor needs event delivery, which the hypervisor refused (see the boot warnings)"
    );
    if let Err(e) = timer::init() {
        panic!("the executor needs VIRQ_TIMER: bind_virq failed: {e}");
    }
    // The main future (and any task spawned before) runs in the first round.
    WOKEN.store(true, Ordering::SeqCst);
    let main_header = Header::new_woken();
    let main_waker = Waker::from(main_header.clone());
    loop {
        // Clear the flags before looking, so that anything arriving from here on
        // is seen by the idle check.
        let mut busy = WOKEN.swap(false, Ordering::SeqCst);
        busy |= events::take_activity();
        busy |= timer::take_fired();
        if busy {
            timer::expire(time::now());
            wake_port_waiters();
            if poll_main(&mut main, &main_header, &main_waker) {
                break;
            }
            poll_tasks();
        }
        if main.is_none() && STATE.0.lock().tasks.iter().all(|t| t.daemon) {
            break;
        }
        if !busy {
            idle();
        }
    }
    RUNNING.store(false, Ordering::SeqCst);
}

/// Polls the main future if it was woken; returns whether it completed. (It goes
/// before the tasks of the same round: order between them is not kept.)
fn poll_main(
    main: &mut Option<Pin<&mut (dyn Future<Output = ()> + '_)>>,
    header: &Arc<Header>,
    waker: &Waker,
) -> bool {
    let Some(m) = main.as_mut() else {
        return false;
    };
    if header.woken.swap(0, Ordering::SeqCst) == 0 {
        return false;
    }
    m.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
}

/// Polls every woken task, in wake order.
fn poll_tasks() {
    let mut ready: Vec<(u64, Task)> = {
        let mut st = STATE.0.lock();
        let mut i = 0;
        let mut ready = Vec::new();
        while i < st.tasks.len() {
            let seq = st.tasks[i].header.woken.swap(0, Ordering::SeqCst);
            if seq != 0 {
                ready.push((seq, st.tasks.swap_remove(i)));
            } else {
                i += 1;
            }
        }
        ready
    };
    ready.sort_by_key(|(seq, _)| *seq);
    for (_, mut task) in ready {
        let waker = Waker::from(task.header.clone());
        // Not under the lock: the task may spawn or wait on ports.
        if task
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            STATE.0.lock().tasks.push(task);
        }
    }
}

fn wake_port_waiters() {
    let woken: Vec<Waker> = {
        let mut st = STATE.0.lock();
        let ports: Vec<Port> = st
            .waiters
            .keys()
            .copied()
            .filter(|&p| events::is_latched(p))
            .collect();
        ports
            .into_iter()
            .filter_map(|p| st.waiters.remove(&p))
            .collect()
    };
    for w in woken {
        w.wake();
    }
}

/// Nothing to do: block until an event (or the timer) arrives.
fn idle() {
    let enabled = events::disable();
    if WOKEN.load(Ordering::SeqCst) || events::activity() || timer::fired() {
        events::restore(enabled);
        return;
    }
    if let Err(e) = timer::arm() {
        panic!("executor: set_timer_op failed: {e}");
    }
    BLOCKS.fetch_add(1, Ordering::Relaxed);
    // Blocks with events masked: Xen enables them and checks for pending ones
    // atomically, and the upcall runs as the hypercall returns.
    if let Err(e) = hypercall::sched_block() {
        panic!("executor: SCHEDOP_block failed: {e} (the executor needs it to idle)");
    }
    if !enabled {
        events::disable();
    }
}

/// A future that completes when an event arrives on `port` (one delivered since the
/// previous `wait_event` on it completed counts: events are latched, never lost, and
/// like Xen's pending bit several coalesce into one). One waiter per port at a time.
pub fn wait_event(port: Port) -> WaitEvent {
    WaitEvent {
        port,
        registered: false,
    }
}

#[must_use = "futures do nothing unless awaited"]
pub struct WaitEvent {
    port: Port,
    registered: bool,
}

impl Future for WaitEvent {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let port = self.port;
        if events::take_latched(port) {
            if self.registered {
                STATE.0.lock().waiters.remove(&port);
                self.registered = false;
            }
            return Poll::Ready(());
        }
        STATE.0.lock().waiters.insert(port, cx.waker().clone());
        self.registered = true;
        // An event latched after the check above is seen by the executor's next
        // round (it raises the activity flag), which wakes us.
        Poll::Pending
    }
}

impl Drop for WaitEvent {
    fn drop(&mut self) {
        if self.registered {
            STATE.0.lock().waiters.remove(&self.port);
        }
    }
}

/// `future`'s output, or `Err(TimedOut)` if `d` passes first.
pub async fn with_timeout<F: Future>(d: Duration, future: F) -> Result<F::Output, TimedOut> {
    Timeout {
        future: Box::pin(future),
        sleep: timer::sleep(d),
    }
    .await
}

/// The deadline of [`with_timeout`] passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

struct Timeout<F: Future> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Lets the other woken tasks run once.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
