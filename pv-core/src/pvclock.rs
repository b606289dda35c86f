//! Xen's PV clock arithmetic (`xen/include/public/xen.h`, `vcpu_time_info`; Xen's
//! `scale_delta` in `xen/arch/x86/time.c`, Linux's `pvclock_clocksource_read`):
//! system time = `system_time` + the TSC ticks since `tsc_timestamp`, scaled.
//!
//! The TSC delta is modular, as in Linux's pvclock: when Xen emulates the guest's TSC
//! (the default on a host whose TSC is not marked reliable, TCG among them), its
//! `tsc_timestamp` can be "negative" (above 2^63) until its next calibration, while
//! the TSC a guest reads is small; the wrapped difference is the real one. A
//! difference that is negative as a signed number is a snapshot a little ahead of the
//! TSC just read (two clocks): it counts as zero.

/// The TSC ticks from `stamp` to `tsc`, modulo 2^64; zero if `tsc` is (a little)
/// before `stamp`.
pub fn tsc_delta(tsc: u64, stamp: u64) -> u64 {
    let d = tsc.wrapping_sub(stamp);
    if (d as i64) < 0 {
        0
    } else {
        d
    }
}

/// Converts a TSC delta to nanoseconds with Xen's scale (`tsc_to_system_mul`, a 32.32
/// fixed-point factor applied after shifting by `tsc_shift`).
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift < 0 {
        delta >> u32::from(shift.unsigned_abs())
    } else {
        delta << shift as u32
    };
    ((u128::from(d) * u128::from(mul)) >> 32) as u64
}

/// System time (nanoseconds) at TSC value `tsc` from one consistent snapshot.
pub fn system_time(system_time: u64, stamp: u64, mul: u32, shift: i8, tsc: u64) -> u64 {
    system_time.wrapping_add(scale_delta(tsc_delta(tsc, stamp), mul, shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 GHz: mul 2^31 with shift 1 is a factor of exactly 1.
    const MUL: u32 = 1 << 31;
    const SHIFT: i8 = 1;

    #[test]
    fn time_advances_with_the_tsc() {
        assert_eq!(system_time(5_000, 100, MUL, SHIFT, 100), 5_000);
        assert_eq!(system_time(5_000, 100, MUL, SHIFT, 1_100), 6_000);
    }

    #[test]
    fn a_negative_timestamp_is_modular_not_a_stopped_clock() {
        // Xen's emulated TSC: the stamp is 1,000 ticks "before zero", the TSC at 500.
        let stamp = 0u64.wrapping_sub(1_000);
        assert_eq!(tsc_delta(500, stamp), 1_500);
        assert_eq!(system_time(7_000, stamp, MUL, SHIFT, 500), 8_500);
        // And it keeps moving (a saturating difference said 0 for both).
        assert!(system_time(7_000, stamp, MUL, SHIFT, 900) > 8_500);
    }

    #[test]
    fn a_snapshot_just_ahead_of_the_tsc_counts_as_zero() {
        assert_eq!(tsc_delta(1_000, 1_010), 0);
        assert_eq!(system_time(42, 1_010, MUL, SHIFT, 1_000), 42);
    }

    #[test]
    fn scale_applies_the_shift_both_ways() {
        assert_eq!(scale_delta(1_000, MUL, 0), 500);
        assert_eq!(scale_delta(1_000, MUL, -1), 250);
        assert_eq!(scale_delta(1_000, u32::MAX, 1), 1_999);
    }
}
