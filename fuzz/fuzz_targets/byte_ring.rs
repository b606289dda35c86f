#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pv_fuzz::byte_ring::check(data));
