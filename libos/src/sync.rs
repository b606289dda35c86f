//! An async mutex for tasks of the libos executor: one task at a time holds the value,
//! across awaits (a disk commit, a network round trip), and the others wait their
//! turn in order, blocked in the executor rather than spinning. Single vCPU, tasks
//! only: never lock it from an event handler.

use alloc::collections::VecDeque;
use core::cell::{Cell, RefCell, UnsafeCell};
use core::future::poll_fn;
use core::ops::{Deref, DerefMut};
use core::task::{Poll, Waker};

/// A value shared by tasks, one at a time.
pub struct Mutex<T> {
    locked: Cell<bool>,
    waiters: RefCell<VecDeque<Waker>>,
    value: UnsafeCell<T>,
}

// SAFETY: libos runs tasks on one vCPU, one at a time, and never from an event
// handler (see the module doc), so the value is never reached from two contexts at
// once; `locked` hands it to one guard at a time.
unsafe impl<T> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex {
            locked: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the value, then holds it until the guard is dropped.
    pub async fn lock(&self) -> Guard<'_, T> {
        poll_fn(|cx| {
            if self.locked.get() {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            } else {
                self.locked.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Guard { lock: self }
    }
}

/// The value, held.
pub struct Guard<'a, T> {
    lock: &'a Mutex<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (`locked`), and it borrows `self`.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `self` is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.set(false);
        // The next waiter tries again (a woken task that finds it taken queues anew).
        if let Some(w) = self.lock.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }
}
