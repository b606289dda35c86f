//! Virtual time (`xen.h`: `vcpu_time_info`, the `shared_info` wall clock).
//!
//! System time is nanoseconds since the shim started, derived from the TSC, which every
//! guest reads directly: a guest computes `system_time + scale(rdtsc - tsc_timestamp)`
//! from the `vcpu_time_info` the shim publishes, with Xen's scale (a 32.32 fixed-point
//! multiplier after a shift, `set_time_scale` of xen/arch/x86/time.c). The wall clock is
//! the Unix time at system time 0 (`wc_sec`/`wc_nsec`), so wall time = wc + system time.

use core::mem::offset_of;

use xen_sys::{shared_info, vcpu_time_info};

use crate::machine::{write_bytes, Machine, Mfn};

/// Xen's `struct time_scale`: `ns = ((ticks << shift) * mul_frac) >> 32` (a negative
/// shift shifts right).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    pub shift: i8,
    pub mul_frac: u32,
}

const NS_PER_SEC: u64 = 1_000_000_000;

impl TimeScale {
    /// The scale turning ticks of a `hz` counter into nanoseconds (`set_time_scale`).
    pub fn for_hz(hz: u64) -> Self {
        let mut tps64 = hz.max(1);
        let mut shift: i8 = 0;
        while tps64 > 2 * NS_PER_SEC {
            tps64 >>= 1;
            shift -= 1;
        }
        let mut tps32 = tps64 as u32;
        while tps32 as u64 <= NS_PER_SEC {
            tps32 <<= 1;
            shift += 1;
        }
        TimeScale {
            shift,
            mul_frac: ((NS_PER_SEC << 32) / tps32 as u64) as u32,
        }
    }

    /// Nanoseconds in `delta` ticks, as a guest computes them.
    pub fn scale(&self, delta: u64) -> u64 {
        let d = if self.shift < 0 {
            delta >> (-self.shift) as u32
        } else {
            delta << self.shift as u32
        };
        ((d as u128 * self.mul_frac as u128) >> 32) as u64
    }
}

/// The shim's clock: the TSC's rate and value at system time 0, and the wall clock then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub tsc_hz: u64,
    pub tsc0: u64,
    pub scale: TimeScale,
    /// Unix time at system time 0.
    pub wall_sec: u64,
    pub wall_nsec: u32,
}

impl Clock {
    pub fn new(tsc_hz: u64, tsc0: u64, wall_sec: u64, wall_nsec: u32) -> Self {
        Clock {
            tsc_hz,
            tsc0,
            scale: TimeScale::for_hz(tsc_hz),
            wall_sec,
            wall_nsec,
        }
    }

    /// System time (ns) at TSC value `tsc`.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        self.scale.scale(tsc.saturating_sub(self.tsc0))
    }

    /// The first TSC value at which a guest reading the clock sees system time `ns` or
    /// later (for programming timers): the inverse of the guest's scale, so a timer
    /// never fires before its deadline as the guest sees it.
    pub fn tsc_at(&self, ns: u64) -> u64 {
        let TimeScale { shift, mul_frac } = self.scale;
        let shifted = ((ns as u128) << 32).div_ceil(mul_frac.max(1) as u128);
        let mut d = if shift >= 0 {
            shifted.div_ceil(1u128 << shift)
        } else {
            shifted << (-shift) as u32
        };
        let d64 = |d: u128| u64::try_from(d).unwrap_or(u64::MAX);
        while self.scale.scale(d64(d)) < ns && d64(d) < u64::MAX {
            d += 1;
        }
        self.tsc0.saturating_add(d64(d))
    }

    /// Writes a `vcpu_time_info` at byte `offset` of frame `mfn` for TSC value `tsc`,
    /// with Xen's version protocol: odd while it changes, then even and greater.
    pub fn publish<M: Machine + ?Sized>(&self, m: &mut M, mfn: Mfn, offset: usize, tsc: u64) {
        let at = |f: usize| offset + f;
        let Some(frame) = m.frame(mfn) else { return };
        let vo = at(offset_of!(vcpu_time_info, version));
        let Some(v) = frame.get(vo..vo + 4) else {
            return;
        };
        let version = u32::from_le_bytes(v.try_into().unwrap_or_default());
        let version = version | 1; // odd: an update is under way
        write_bytes(m, mfn, vo, &version.to_le_bytes());
        write_bytes(
            m,
            mfn,
            at(offset_of!(vcpu_time_info, tsc_timestamp)),
            &tsc.to_le_bytes(),
        );
        write_bytes(
            m,
            mfn,
            at(offset_of!(vcpu_time_info, system_time)),
            &self.ns_at(tsc).to_le_bytes(),
        );
        write_bytes(
            m,
            mfn,
            at(offset_of!(vcpu_time_info, tsc_to_system_mul)),
            &self.scale.mul_frac.to_le_bytes(),
        );
        write_bytes(
            m,
            mfn,
            at(offset_of!(vcpu_time_info, tsc_shift)),
            &[self.scale.shift as u8],
        );
        // XEN_PVCLOCK_TSC_STABLE_BIT: one TSC for every vCPU, never going back.
        write_bytes(
            m,
            mfn,
            at(offset_of!(vcpu_time_info, flags)),
            &[xen_sys::XEN_PVCLOCK_TSC_STABLE_BIT as u8],
        );
        write_bytes(m, mfn, vo, &version.wrapping_add(1).to_le_bytes());
    }

    /// Writes the wall clock (`wc_*` of `shared_info`) with its version protocol.
    pub fn publish_wallclock<M: Machine + ?Sized>(&self, m: &mut M, shared_info: Mfn) {
        let vo = offset_of!(shared_info, wc_version);
        let Some(v) = m.frame(shared_info).and_then(|f| f.get(vo..vo + 4)) else {
            return;
        };
        let version = u32::from_le_bytes(v.try_into().unwrap_or_default()) | 1;
        write_bytes(m, shared_info, vo, &version.to_le_bytes());
        write_bytes(
            m,
            shared_info,
            offset_of!(shared_info, wc_sec),
            &(self.wall_sec as u32).to_le_bytes(),
        );
        write_bytes(
            m,
            shared_info,
            offset_of!(shared_info, wc_sec_hi),
            &((self.wall_sec >> 32) as u32).to_le_bytes(),
        );
        write_bytes(
            m,
            shared_info,
            offset_of!(shared_info, wc_nsec),
            &self.wall_nsec.to_le_bytes(),
        );
        write_bytes(m, shared_info, vo, &version.wrapping_add(1).to_le_bytes());
    }
}

/// Unix time of a calendar date and time (UTC), for the RTC read at boot.
pub fn unix_time(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> u64 {
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + m * 60 + s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestMachine;

    #[test]
    fn scale_matches_the_rate() {
        for hz in [
            1_000_000_000u64,
            2_400_000_000,
            3_193_000_000,
            100_000_000,
            25_000_000,
        ] {
            let s = TimeScale::for_hz(hz);
            // One second of ticks is one second, within a part per million.
            let ns = s.scale(hz);
            assert!(
                ns.abs_diff(NS_PER_SEC) <= NS_PER_SEC / 1_000_000,
                "{hz}: {ns}"
            );
            let ns = s.scale(hz * 3600);
            assert!(ns.abs_diff(3600 * NS_PER_SEC) <= 3600 * 1000, "{hz}: {ns}");
        }
        // A 1 GHz counter: ticks are nanoseconds.
        let s = TimeScale::for_hz(NS_PER_SEC);
        assert!(s.scale(12_345).abs_diff(12_345) <= 1);
    }

    #[test]
    fn deadlines_never_come_early() {
        let c = Clock::new(2_394_123_456, 1_000_000, 0, 0);
        for ns in [0u64, 1, 999, 1_000_000, 123_456_789_012] {
            let t = c.tsc_at(ns);
            assert!(c.ns_at(t) >= ns, "{ns}");
            assert!(
                t == c.tsc0 || c.ns_at(t - 1) < ns,
                "{ns}: the first such tick"
            );
        }
        assert_eq!(c.ns_at(0), 0, "before tsc0 is time 0");
    }

    #[test]
    fn published_time_follows_the_version_protocol() {
        let mut m = TestMachine::new(0, 2);
        let c = Clock::new(1_000_000_000, 100, 1_700_000_000, 5);
        let off = offset_of!(shared_info, vcpu_info) + offset_of!(xen_sys::vcpu_info, time);
        c.publish(&mut m, 1, off, 1100);
        let f = m.frame(1).unwrap();
        let rd64 = |o: usize| u64::from_le_bytes(f[off + o..off + o + 8].try_into().unwrap());
        let version = u32::from_le_bytes(f[off..off + 4].try_into().unwrap());
        assert_eq!(version % 2, 0);
        assert!(version > 0);
        assert_eq!(rd64(offset_of!(vcpu_time_info, tsc_timestamp)), 1100);
        assert_eq!(rd64(offset_of!(vcpu_time_info, system_time)), c.ns_at(1100));
        c.publish(&mut m, 1, off, 2100);
        let f = m.frame(1).unwrap();
        let v2 = u32::from_le_bytes(f[off..off + 4].try_into().unwrap());
        assert!(v2 > version && v2 % 2 == 0);
        c.publish_wallclock(&mut m, 1);
        let f = m.frame(1).unwrap();
        let o = offset_of!(shared_info, wc_sec);
        assert_eq!(
            u32::from_le_bytes(f[o..o + 4].try_into().unwrap()),
            1_700_000_000
        );
    }

    #[test]
    fn calendar_to_unix_time() {
        assert_eq!(unix_time(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_time(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix_time(2026, 11, 23, 12, 34, 56), 1_795_437_296);
    }
}
