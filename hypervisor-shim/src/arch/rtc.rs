//! The CMOS real-time clock, read once at boot for the guests' wall clock
//! (`shared_info.wc_*`). Machines without one give the Unix epoch.

use x86_64::instructions::port::Port;

fn cmos(reg: u8) -> u8 {
    // SAFETY: the CMOS index/data ports; NMI stays enabled (bit 7 clear) as it was.
    unsafe {
        Port::<u8>::new(0x70).write(reg);
        Port::<u8>::new(0x71).read()
    }
}

/// Unix time now, per the RTC; 0 if there is no plausible RTC.
pub fn unix_time() -> u64 {
    // Wait out an update in progress, then read until two reads agree.
    let read = || {
        for _ in 0..100_000 {
            if cmos(0x0a) & 0x80 == 0 {
                break;
            }
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09].map(cmos)
    };
    let mut v = read();
    for _ in 0..4 {
        let w = read();
        if w == v {
            break;
        }
        v = w;
    }
    let status_b = cmos(0x0b);
    let bin = |x: u8| {
        if status_b & 0x04 != 0 {
            x as u64
        } else {
            ((x >> 4) * 10 + (x & 0xf)) as u64
        }
    };
    let [s, m, h, d, mo, y] = v;
    let mut hour = bin(h & 0x7f);
    if status_b & 0x02 == 0 {
        // 12-hour mode: bit 7 says PM.
        hour = hour % 12 + if h & 0x80 != 0 { 12 } else { 0 };
    }
    let (sec, min, day, month, year) = (bin(s), bin(m), bin(d), bin(mo), 2000 + bin(y));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return 0;
    }
    hypervisor_shim::time::unix_time(year, month, day, hour, min, sec)
}
