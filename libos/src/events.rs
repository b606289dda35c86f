//! Event delivery and the port dispatcher (`xen/include/public/xen.h`: `shared_info`'s
//! `evtchn_pending`/`evtchn_mask` bitmaps, `vcpu_info`'s `evtchn_upcall_pending`,
//! `evtchn_upcall_mask` and `evtchn_pending_sel`; `callback.h`: `CALLBACKTYPE_event`
//! and `CALLBACKTYPE_failsafe`; the 2-level ABI of `event_channel.h`).
//!
//! How Xen delivers events to a 64-bit PV guest (`xen/common/event_2l.c`,
//! `xen/arch/x86/x86_64/entry.S`): sending on a port sets its bit in `evtchn_pending`;
//! if the port is not masked and the bit was clear, Xen sets the port's word in
//! `evtchn_pending_sel` and `evtchn_upcall_pending`. When the vCPU next returns to the
//! guest with `evtchn_upcall_pending` set and `evtchn_upcall_mask` clear, Xen pushes a
//! bounce frame (`RCX, R11, RIP, CS, RFLAGS, RSP, SS`; RFLAGS.IF = the mask's old value
//! inverted), sets `evtchn_upcall_mask` and jumps to the event callback. We save every
//! register, scan, and return with `HYPERVISOR_iret`, which restores the mask from
//! RFLAGS.IF and delivers any event that arrived meanwhile (so upcalls never nest).
//!
//! Handlers run in that upcall context, with events masked: they must be short and
//! must not allocate (the interrupted code may hold the heap's lock) nor block. The
//! executor's own handlers only set flags; its wakers are safe to wake from a handler.
//!
//! Every delivered event also sets a per-port latch that [`take_latched`] consumes:
//! that is how the executor's `wait_event` sees events without a handler of its own.
//! Ports start unmasked (as Xen leaves them); [`mask`]/[`unmask`] are explicit.

use alloc::vec::Vec;
use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};

use spin::Mutex;
use xen_sys::{
    __HYPERVISOR_iret, shared_info, vcpu_info, xen_ulong_t, CALLBACKTYPE_event,
    CALLBACKTYPE_failsafe, SHUTDOWN_crash,
};

pub use crate::hypercall::Port;
use crate::hypercall::{self, XenError};

/// A function called (in upcall context, events masked) for each event on its port.
pub type Handler = &'static (dyn Fn(Port) + Sync);

const WORD_BITS: usize = xen_ulong_t::BITS as usize;
/// Ports of the 2-level ABI: one bit each in the pending bitmap of `shared_info`.
pub const NR_PORTS: usize =
    8 * (offset_of!(shared_info, evtchn_mask) - offset_of!(shared_info, evtchn_pending));
const WORDS: usize = NR_PORTS / WORD_BITS;

/// Port -> handler, as long as the highest port bound so far (an appliance binds a few
/// low ports; a table of all 4096 would be 64 KiB of every image). Only locked with
/// events masked (the upcall runs masked; other code masks first), so on our single
/// vCPU the lock is never contended; only [`bind`] grows it, never the upcall.
static HANDLERS: Mutex<Vec<Option<Handler>>> = Mutex::new(Vec::new());
/// One bit per port: an event was delivered since [`take_latched`] last cleared it.
static LATCHED: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];
/// Some event was delivered since [`take_activity`] last looked.
static ACTIVITY: AtomicBool = AtomicBool::new(false);
/// Upcalls taken, and events dispatched (statistics).
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static DISPATCHED: AtomicU64 = AtomicU64::new(0);
/// The callbacks are registered: events can be delivered.
static READY: AtomicBool = AtomicBool::new(false);

global_asm!(
    ".pushsection .text.libos_events, \"ax\"",
    // The event callback. RSP points at Xen's frame: RCX, R11, RIP, CS, RFLAGS, RSP, SS.
    ".global libos_event_entry",
    "libos_event_entry:",
    "    cld",
    "    push rax; push rbx; push rdx; push rsi; push rdi; push rbp",
    "    push r8; push r9; push r10; push r12; push r13; push r14; push r15",
    "    mov rbx, rsp",
    "    and rsp, -16",
    "    call {dispatch}",
    "    mov rsp, rbx",
    "    pop r15; pop r14; pop r13; pop r12; pop r10; pop r9; pop r8",
    "    pop rbp; pop rdi; pop rsi; pop rdx; pop rbx; pop rax",
    // Xen's RCX and R11 go back into their registers: the hypercall page's iret entry
    // pushes them (and RAX) itself, after our `flags` word (0: not from a syscall).
    "    pop rcx; pop r11",
    "    push 0",
    "    jmp hypercall_page + {iret_offset}",
    // The failsafe callback: Xen could not load a segment register on the way back to
    // us. RSP points at RCX, R11, DS, ES, FS, GS, RIP, CS, RFLAGS, RSP, SS.
    ".global libos_failsafe_entry",
    "libos_failsafe_entry:",
    "    cld",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    call {failsafe}",
    "    ud2",
    ".popsection",
    dispatch = sym libos_event_upcall,
    failsafe = sym libos_failsafe,
    iret_offset = const __HYPERVISOR_iret * 32,
);

unsafe extern "C" {
    fn libos_event_entry();
    fn libos_failsafe_entry();
}

fn shared() -> Option<&'static shared_info> {
    // SAFETY: once mapped, shared_info stays mapped for the domain's life; Xen changes
    // it underneath us, so every field we read or write goes through atomics below.
    crate::shared_info::get().map(|p| unsafe { &*p })
}

fn vcpu0() -> Option<&'static vcpu_info> {
    shared().map(|s| &s.vcpu_info[0])
}

fn atomic_u8(p: &u8) -> &AtomicU8 {
    // SAFETY: same size and alignment; the field lives in shared_info, which Xen
    // accesses concurrently, hence atomic access.
    unsafe { AtomicU8::from_ptr(p as *const u8 as *mut u8) }
}

fn atomic_word(p: &xen_ulong_t) -> &AtomicU64 {
    // SAFETY: as for `atomic_u8`.
    unsafe { AtomicU64::from_ptr(p as *const xen_ulong_t as *mut u64) }
}

fn split(port: Port) -> (usize, u64) {
    let p = port as usize;
    assert!(p < NR_PORTS, "event channel port {port} out of range");
    (p / WORD_BITS, 1 << (p % WORD_BITS))
}

/// Registers the event and failsafe callbacks and enables delivery.
pub(crate) fn init() -> Result<(), XenError> {
    if shared().is_none() {
        // Same code Xen gives for a bad address: without shared_info nothing works.
        return Err(XenError(i64::from(xen_sys::XEN_EFAULT)));
    }
    disable();
    hypercall::callback_register(CALLBACKTYPE_event, libos_event_entry as *const () as u64, 0)?;
    hypercall::callback_register(
        CALLBACKTYPE_failsafe,
        libos_failsafe_entry as *const () as u64,
        0,
    )?;
    READY.store(true, Ordering::Release);
    enable();
    Ok(())
}

/// Whether events can be delivered (the callbacks are registered).
pub fn available() -> bool {
    READY.load(Ordering::Acquire)
}

/// Binds `handler` to `port`; returns the handler it replaces.
pub fn bind(port: Port, handler: Handler) -> Option<Handler> {
    split(port);
    masked(|| {
        let mut handlers = HANDLERS.lock();
        if handlers.len() <= port as usize {
            handlers.resize(port as usize + 1, None);
        }
        handlers[port as usize].replace(handler)
    })
}

/// Removes `port`'s handler (events on it are still latched for `wait_event`).
pub fn unbind(port: Port) -> Option<Handler> {
    split(port);
    masked(|| HANDLERS.lock().get_mut(port as usize)?.take())
}

/// Masks `port`: its events stay pending, undelivered, until [`unmask`].
pub fn mask(port: Port) {
    let (w, bit) = split(port);
    if let Some(s) = shared() {
        atomic_word(&s.evtchn_mask[w]).fetch_or(bit, Ordering::SeqCst);
    }
}

/// Unmasks `port`, delivering an event that became pending while it was masked: the
/// local form of `EVTCHNOP_unmask` that Xen's `evtchn_2l_unmask` performs (clear the
/// mask bit; if the port is pending, set its selector bit and `evtchn_upcall_pending`,
/// and have the upcall taken if events are enabled).
pub fn unmask(port: Port) {
    let (w, bit) = split(port);
    let (Some(s), Some(v)) = (shared(), vcpu0()) else {
        return;
    };
    masked(|| {
        atomic_word(&s.evtchn_mask[w]).fetch_and(!bit, Ordering::SeqCst);
        if atomic_word(&s.evtchn_pending[w]).load(Ordering::SeqCst) & bit != 0 {
            atomic_word(&v.evtchn_pending_sel).fetch_or(1 << w, Ordering::SeqCst);
            atomic_u8(&v.evtchn_upcall_pending).store(1, Ordering::SeqCst);
        }
    });
}

/// Whether `port` is masked.
pub fn is_masked(port: Port) -> bool {
    let (w, bit) = split(port);
    shared().is_some_and(|s| atomic_word(&s.evtchn_mask[w]).load(Ordering::SeqCst) & bit != 0)
}

/// Whether `port` has an event Xen has not delivered yet (pending bit set).
pub fn is_pending(port: Port) -> bool {
    let (w, bit) = split(port);
    shared().is_some_and(|s| atomic_word(&s.evtchn_pending[w]).load(Ordering::SeqCst) & bit != 0)
}

/// Clears `port`'s pending bit (an event that is no longer wanted).
pub fn clear_pending(port: Port) {
    let (w, bit) = split(port);
    if let Some(s) = shared() {
        atomic_word(&s.evtchn_pending[w]).fetch_and(!bit, Ordering::SeqCst);
    }
}

/// Consumes `port`'s latch: whether an event was delivered on it since the last call.
pub fn take_latched(port: Port) -> bool {
    let (w, bit) = split(port);
    LATCHED[w].fetch_and(!bit, Ordering::SeqCst) & bit != 0
}

/// Whether `port`'s latch is set (without consuming it).
pub fn is_latched(port: Port) -> bool {
    let (w, bit) = split(port);
    LATCHED[w].load(Ordering::SeqCst) & bit != 0
}

/// Whether any event was delivered since the last call (clears the flag).
pub fn take_activity() -> bool {
    ACTIVITY.swap(false, Ordering::SeqCst)
}

/// Whether any event was delivered since [`take_activity`] last looked.
pub fn activity() -> bool {
    ACTIVITY.load(Ordering::SeqCst)
}

/// Upcalls taken and events dispatched so far.
pub fn stats() -> (u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        DISPATCHED.load(Ordering::Relaxed),
    )
}

/// Masks event delivery (`evtchn_upcall_mask = 1`); returns whether it was enabled.
pub fn disable() -> bool {
    let was = vcpu0().map_or(1, |v| {
        atomic_u8(&v.evtchn_upcall_mask).swap(1, Ordering::SeqCst)
    });
    fence(Ordering::SeqCst);
    was == 0
}

/// Enables event delivery; an event already pending is delivered before this returns
/// (Xen checks for pending events on the way out of any hypercall, so one forces it,
/// as Linux's `xen_force_evtchn_callback` does).
pub fn enable() {
    let Some(v) = vcpu0() else { return };
    fence(Ordering::SeqCst);
    atomic_u8(&v.evtchn_upcall_mask).store(0, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if atomic_u8(&v.evtchn_upcall_pending).load(Ordering::SeqCst) != 0 && available() {
        let _ = hypercall::xen_version();
    }
}

/// Enables delivery again if `enabled` (the value [`disable`] returned).
pub fn restore(enabled: bool) {
    if enabled {
        enable();
    }
}

/// Runs `f` with event delivery masked (nesting is fine).
pub fn masked<R>(f: impl FnOnce() -> R) -> R {
    let enabled = disable();
    let r = f();
    restore(enabled);
    r
}

/// Whether an event is waiting for delivery (`evtchn_upcall_pending`).
pub fn upcall_pending() -> bool {
    vcpu0().is_some_and(|v| atomic_u8(&v.evtchn_upcall_pending).load(Ordering::SeqCst) != 0)
}

/// The 2-level scan, in upcall context with events masked: take the selector, then in
/// each selected word the pending and unmasked ports, lowest first; clear each pending
/// bit before its handler runs, so an event sent meanwhile pends (and is delivered)
/// again.
extern "C" fn libos_event_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let (Some(s), Some(v)) = (shared(), vcpu0()) else {
        return;
    };
    loop {
        atomic_u8(&v.evtchn_upcall_pending).store(0, Ordering::SeqCst);
        let mut sel = atomic_word(&v.evtchn_pending_sel).swap(0, Ordering::SeqCst);
        if sel == 0 {
            return;
        }
        while sel != 0 {
            let w = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            let pending = atomic_word(&s.evtchn_pending[w]);
            let mask = atomic_word(&s.evtchn_mask[w]);
            // One snapshot per word: a port that fires again from its own handler is
            // seen through the selector on the next pass, not in a loop here.
            let mut bits = pending.load(Ordering::SeqCst) & !mask.load(Ordering::SeqCst);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                pending.fetch_and(!(1 << b), Ordering::SeqCst);
                dispatch((w * WORD_BITS + b) as Port);
            }
        }
    }
}

fn dispatch(port: Port) {
    DISPATCHED.fetch_add(1, Ordering::Relaxed);
    let (w, bit) = split(port);
    LATCHED[w].fetch_or(bit, Ordering::SeqCst);
    ACTIVITY.store(true, Ordering::SeqCst);
    // Copied out so the handler may bind or unbind (the lock is not held).
    let handler = HANDLERS.lock().get(port as usize).copied().flatten();
    if let Some(h) = handler {
        h(port);
    }
}

/// Xen's failsafe frame, lowest address first.
#[repr(C)]
struct FailsafeFrame {
    rcx: u64,
    r11: u64,
    ds: u64,
    es: u64,
    fs: u64,
    gs: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

extern "C" fn libos_failsafe(f: *const FailsafeFrame) -> ! {
    // SAFETY: the entry stub passes RSP, where Xen pushed this frame.
    let f = unsafe { &*f };
    crate::println!(
        "libos: failsafe callback: Xen could not restore a segment (ds={:#x} es={:#x} fs={:#x} gs={:#x}) returning to rip={:#x} cs={:#x} rsp={:#x} ss={:#x} (rcx={:#x} r11={:#x} rflags={:#x})",
        f.ds, f.es, f.fs, f.gs, f.rip, f.cs & 0xffff, f.rsp, f.ss & 0xffff, f.rcx, f.r11, f.rflags
    );
    crate::println!("libos: crashing the domain");
    hypercall::shutdown(SHUTDOWN_crash)
}
