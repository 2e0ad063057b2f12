//! libFuzzer entry for `nnc::testing::fuzz::isa_decode`, where the target's body and its contract live.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nnc::testing::fuzz::isa_decode(data));
