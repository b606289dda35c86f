//! Monotonic and wall-clock time (`xen/include/public/xen.h`: `vcpu_time_info` in each
//! `vcpu_info`, and `shared_info`'s `wc_version`, `wc_sec`, `wc_nsec`, `wc_sec_hi`).
//!
//! Xen's system time is nanoseconds since the host booted. It publishes, per vCPU, a
//! snapshot (`system_time` at TSC `tsc_timestamp`) and the TSC-to-nanoseconds scale
//! (`tsc_to_system_mul`, a 32.32 fixed-point factor applied after shifting by
//! `tsc_shift`); we extrapolate with `rdtsc`. Xen makes `version` odd while it updates
//! the snapshot, so a read is retried if `version` was odd or changed. The wall clock is
//! the time of day at system time 0, versioned the same way. The arithmetic (modular, as
//! Linux's pvclock) is `pv_core::pvclock`'s, tested on the host.

use core::ops::{Add, AddAssign, Sub};
use core::sync::atomic::{fence, AtomicU64, Ordering};
use core::time::Duration;

use xen_sys::{shared_info, vcpu_time_info};

/// A point in Xen's system time: nanoseconds since boot. Monotonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The current system time.
    pub fn now() -> Instant {
        now()
    }

    /// The instant `ns` nanoseconds of system time (what Xen's timer calls take).
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    /// Nanoseconds of system time.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time from `earlier` to `self`; `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time elapsed since `self`.
    pub fn elapsed(self) -> Duration {
        now().saturating_duration_since(self)
    }

    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|n| self.0.checked_add(n))
            .map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the end of time rather than wrapping.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant(u64::MAX))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl core::fmt::Display for Instant {
    /// Seconds since boot, to the microsecond.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000 / 1000
        )
    }
}

/// The latest time handed out: `now` never goes backwards, even if two snapshots from
/// Xen disagree by a few nanoseconds.
static LAST: AtomicU64 = AtomicU64::new(0);

fn shared() -> &'static shared_info {
    let p = crate::shared_info::get().expect("time needs shared_info, which is not mapped");
    // SAFETY: mapped for the domain's life; the fields are read volatile below, under
    // the version protocol.
    unsafe { &*p }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; Xen lets PV guests run it natively.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn read<T: Copy>(p: &T) -> T {
    // SAFETY: `p` is a live reference into shared_info, which Xen writes concurrently.
    unsafe { core::ptr::read_volatile(p) }
}

pub use pv_core::pvclock::scale_delta;

/// System time from `t`, under the version protocol.
fn system_time(t: &vcpu_time_info) -> u64 {
    loop {
        let v1 = read(&t.version);
        fence(Ordering::Acquire);
        let tsc_timestamp = read(&t.tsc_timestamp);
        let system_time = read(&t.system_time);
        let mul = read(&t.tsc_to_system_mul);
        let shift = read(&t.tsc_shift);
        let tsc = rdtsc();
        fence(Ordering::Acquire);
        let v2 = read(&t.version);
        if v1 & 1 == 0 && v1 == v2 {
            // Modular, as Linux's pvclock (pv_core::pvclock: Xen's emulated TSC).
            return pv_core::pvclock::system_time(system_time, tsc_timestamp, mul, shift, tsc);
        }
        core::hint::spin_loop();
    }
}

/// The current system time (monotonic).
pub fn now() -> Instant {
    let t = system_time(&shared().vcpu_info[0].time);
    Instant(LAST.fetch_max(t, Ordering::Relaxed).max(t))
}

/// The wall clock at system time 0 (seconds and nanoseconds since the Unix epoch).
pub fn wall_clock_base() -> Duration {
    let s = shared();
    loop {
        let v1 = read(&s.wc_version);
        fence(Ordering::Acquire);
        let sec = u64::from(read(&s.wc_sec)) | u64::from(read(&s.wc_sec_hi)) << 32;
        let nsec = read(&s.wc_nsec);
        fence(Ordering::Acquire);
        let v2 = read(&s.wc_version);
        if v1 & 1 == 0 && v1 == v2 {
            return Duration::new(sec, nsec);
        }
        core::hint::spin_loop();
    }
}

/// The time of day: time since the Unix epoch.
pub fn wall_clock() -> Duration {
    wall_clock_base() + Duration::from_nanos(now().as_nanos())
}
