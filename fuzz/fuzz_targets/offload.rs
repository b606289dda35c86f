#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pv_fuzz::offload::check(data));
