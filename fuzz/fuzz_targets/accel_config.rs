//! libFuzzer entry for `nnc::testing::fuzz::accel_config`, where the target's body and its contract live.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nnc::testing::fuzz::accel_config(data));
