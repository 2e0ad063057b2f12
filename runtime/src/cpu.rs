//! The CPU features that decide what compiled code may execute and which kernels the runtime
//! dispatches to (and so how weights were packed), as one bit mask.
//!
//! A library written by `nnc compile --emit lib` records the mask of the CPU that compiled it
//! and checks it on every run: code packed for the AVX-512 GEMM's panels read by the AVX2
//! kernel would compute garbage silently, and Cranelift's AVX-512 encodings would fault.

/// The features, in bit order.
const FEATURES: [&str; 14] = ["sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vnni"];

/// Bit `i` set when the CPU has `FEATURES[i]`; bit 63 when it also has AVX-512 BF16.
pub fn features() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let present = [has!("sse4.1"), has!("sse4.2"), has!("popcnt"), has!("avx"), has!("avx2"), has!("fma"), has!("bmi1"), has!("bmi2"), has!("lzcnt"), has!("avx512f"), has!("avx512bw"), has!("avx512dq"), has!("avx512vl"), has!("avx512vnni")];
        debug_assert_eq!(present.len(), FEATURES.len());
        let mask = present.iter().enumerate().fold(0u64, |m, (i, &p)| m | (u64::from(p) << i));
        mask | (u64::from(has!("avx512bf16")) << 63)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The names of the features in `mask`, for messages.
pub fn describe(mask: u64) -> String {
    let mut names: Vec<&str> = FEATURES.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, n)| *n).collect();
    if mask >> 63 & 1 == 1 {
        names.push("avx512bf16");
    }
    names.join(" ")
}

/// [`features`] for compiled code.
#[no_mangle]
pub extern "C" fn nnc_cpu_features() -> u64 {
    features()
}
