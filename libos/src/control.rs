//! Power control by the toolstack (`docs/misc/xenstore-paths.markdown`:
//! `~/control/shutdown`): dom0 writes `poweroff`, `halt` or `reboot` there to ask the
//! domain to stop; the domain acknowledges by clearing the node, then shuts down with
//! that reason (`SCHEDOP_shutdown`), as Linux's `drivers/xen/manage.c` does.
//!
//! Every domain with a store ring obeys, whatever its program does: libos polls
//! [`obey_shutdown_requests`] from the store's event handler ([`poll`]), not from the
//! executor, so an appliance that never runs the executor (a computation, a busy
//! loop) obeys as well, as Linux's `manage.c` does from its xenbus thread. That is
//! safe in upcall context because every lock the task takes (the store client's
//! connection and waker table, the heap, the console) is taken with events masked
//! everywhere, so the handler never waits for a lock the code it interrupted holds.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Waker};

use spin::Mutex;
use xen_sys::{SHUTDOWN_poweroff, SHUTDOWN_reboot};

use crate::hypercall;
use crate::xenbus::{self, Store, NO_TX};

/// The tasks while they run (power control, the balloon's target). Polled from the
/// store's event handler (events masked) and once from [`start`] (masked too): never
/// concurrently.
static TASKS: Mutex<Vec<Task>> = Mutex::new(Vec::new());

struct Task(Pin<Box<dyn Future<Output = ()>>>);

// SAFETY: one vCPU; the futures are only touched under TASKS's lock with events masked.
unsafe impl Send for Task {}

/// Starts watching `control/shutdown` and `memory/target` (the first poll sends the
/// watch requests; the store's replies, each an event, drive the rest through
/// [`poll`]).
pub(crate) fn start() {
    crate::events::masked(|| {
        let mut tasks = TASKS.lock();
        tasks.push(Task(Box::pin(obey_shutdown_requests())));
        tasks.push(Task(Box::pin(follow_memory_target())));
    });
    poll();
}

/// Stops obeying: the store client no longer reads the ring for it. For a program that
/// speaks the store ring itself, bypassing the client (hostile's malformed requests):
/// it should then drain what the client's watch left in the ring.
pub fn stop() {
    crate::events::masked(|| TASKS.lock().clear());
}

/// Moves the tasks on: called by the store's event handler after each store event.
pub(crate) fn poll() {
    crate::events::masked(|| {
        let Some(mut tasks) = TASKS.try_lock() else {
            return;
        };
        // Nothing to wake: the next store event polls again. Twice: a task's poll reads
        // every message the store has sent so far, some perhaps for a task polled
        // before it; the second pass lets that one see it (a message sent later comes
        // with an event of its own, and this handler runs again).
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..2 {
            tasks.retain_mut(|t| t.0.as_mut().poll(&mut cx).is_pending());
        }
    })
}

const NODE: &str = "control/shutdown";

/// Watches `control/shutdown` and obeys what is written there.
pub async fn obey_shutdown_requests() {
    let xs = match xenbus::store() {
        Ok(xs) => xs,
        Err(e) => {
            log::warn!("control: no store: {e}");
            return;
        }
    };
    let mut watch = match xs.watch(NODE).await {
        Ok(w) => w,
        Err(e) => {
            log::warn!("control: cannot watch {NODE}: {e}");
            return;
        }
    };
    loop {
        if let Err(e) = watch.next().await {
            log::warn!("control: watch on {NODE} ended: {e}");
            return;
        }
        let request = match xs.read_string(NO_TX, NODE).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        let reason = match request.as_str() {
            "" => continue,
            "poweroff" | "halt" => SHUTDOWN_poweroff,
            "reboot" => SHUTDOWN_reboot,
            other => {
                log::warn!("control: ignoring shutdown request {other:?}");
                continue;
            }
        };
        let _ = xs.write(NO_TX, NODE, b"").await;
        crate::println!("control: {request} requested by the toolstack");
        hypercall::shutdown(reason);
    }
}

const TARGET: &str = "memory/target";

/// Watches `memory/target` (KiB) and has the balloon follow it ([`crate::balloon`]).
pub async fn follow_memory_target() {
    let Ok(xs) = xenbus::store() else { return };
    let mut watch = match xs.watch(TARGET).await {
        Ok(w) => w,
        Err(e) => {
            log::warn!("balloon: cannot watch {TARGET}: {e}");
            return;
        }
    };
    while watch.next().await.is_ok() {
        let Ok(text) = xs.read_string(NO_TX, TARGET).await else {
            continue;
        };
        let Ok(target) = text.trim().parse::<u64>() else {
            log::warn!("balloon: ignoring {TARGET} {text:?}: not a number of KiB");
            continue;
        };
        let before = crate::balloon::current_kib();
        if target == before {
            continue;
        }
        let now = crate::balloon::set_target(target);
        let held = hypercall::memory_query(xen_sys::XENMEM_current_reservation).unwrap_or(0);
        crate::println!(
            "balloon: target {target} KiB: {before} -> {now} KiB ({} pages given back; the hypervisor counts {held} pages)",
            crate::balloon::given_back()
        );
    }
}
