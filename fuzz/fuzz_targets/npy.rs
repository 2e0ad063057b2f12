//! libFuzzer entry for `nnc::testing::fuzz::npy`, where the target's body and its contract live.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nnc::testing::fuzz::npy(data));
