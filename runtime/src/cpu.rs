//! The CPU features that decide what compiled code may execute and which kernels the runtime
//! dispatches to (and so how weights were packed), as one bit mask.
//!
//! A library written by `nnc compile --emit lib` records the mask of the CPU that compiled it
//! and checks it on every run: code packed for the AVX-512 GEMM's panels read by the AVX2
//! kernel would compute garbage silently, and Cranelift's AVX-512 encodings would fault.

/// The features, in bit order.
const FEATURES: [&str; 14] = ["sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vnni"];

/// Whether the CPU has AVX-512 but runs each 512-bit operation as two 256-bit halves (AMD's
/// Zen 4, family 19h): there 256-bit FMAs do as much work per cycle as 512-bit ones, which
/// makes tiles of ymm registers a free choice (the GEMM's 24-column tile). Zen 5 (family
/// 1Ah) and Intel's AVX-512 cores run 512-bit operations whole.
pub fn avx512_in_halves() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        if !std::arch::is_x86_feature_detected!("avx512f") || !std::arch::is_x86_feature_detected!("avx512vl") {
            return false;
        }
        let (vendor, signature) = (__cpuid(0), __cpuid(1).eax);
        let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (u32::from_le_bytes(*b"Auth"), u32::from_le_bytes(*b"enti"), u32::from_le_bytes(*b"cAMD"));
        // The family as AMD counts it: base family plus extended family.
        let family = (signature >> 8 & 0xf) + (signature >> 20 & 0xff);
        amd && family == 0x19
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Bit `i` set when the CPU has `FEATURES[i]`; bit 62 when it runs AVX-512 in 256-bit halves
/// ([`avx512_in_halves`], which changes the GEMM's tiles and so its packed weights); bit 63
/// when it has AVX-512 BF16.
pub fn features() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let present = [has!("sse4.1"), has!("sse4.2"), has!("popcnt"), has!("avx"), has!("avx2"), has!("fma"), has!("bmi1"), has!("bmi2"), has!("lzcnt"), has!("avx512f"), has!("avx512bw"), has!("avx512dq"), has!("avx512vl"), has!("avx512vnni")];
        debug_assert_eq!(present.len(), FEATURES.len());
        let mask = present.iter().enumerate().fold(0u64, |m, (i, &p)| m | (u64::from(p) << i));
        mask | (u64::from(avx512_in_halves()) << 62) | (u64::from(has!("avx512bf16")) << 63)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The names of the features in `mask`, for messages.
pub fn describe(mask: u64) -> String {
    let mut names: Vec<&str> = FEATURES.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, n)| *n).collect();
    if mask >> 62 & 1 == 1 {
        names.push("avx512-in-halves");
    }
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

/// One data cache level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cache {
    pub bytes: usize,
    pub ways: usize,
    pub line: usize,
}

impl Cache {
    /// Sets of `ways` lines each.
    pub fn sets(&self) -> usize {
        (self.bytes / (self.ways * self.line)).max(1)
    }

    /// Bytes in one way (one line of every set).
    pub fn way_bytes(&self) -> usize {
        self.sets() * self.line
    }
}

/// `(level, cache)` for each data or unified cache Linux lists for CPU 0, read once per
/// process (every compile and every product asks).
pub fn host_caches() -> &'static [(usize, Cache)] {
    static CACHES: std::sync::OnceLock<Vec<(usize, Cache)>> = std::sync::OnceLock::new();
    CACHES.get_or_init(read_host_caches)
}

/// The L1d assumed where the host does not describe its own: a common x86-64 core's.
pub const FALLBACK_L1D: Cache = Cache { bytes: 32 << 10, ways: 8, line: 64 };

fn read_host_caches() -> Vec<(usize, Cache)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else { return out };
    for entry in dir.flatten() {
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok().map(|s| s.trim().to_string());
        if !matches!(read("type").as_deref(), Some("Data" | "Unified")) {
            continue;
        }
        let num = |f: &str| read(f).and_then(|s| s.parse::<usize>().ok()).filter(|&v| v > 0);
        let bytes = read("size").and_then(|s| match s.strip_suffix('K') {
            Some(k) => k.parse::<usize>().ok().map(|v| v << 10),
            None => s.strip_suffix('M').and_then(|m| m.parse::<usize>().ok()).map(|v| v << 20).or_else(|| s.parse().ok()),
        });
        if let (Some(level), Some(bytes), Some(ways), Some(line)) = (num("level"), bytes, num("ways_of_associativity"), num("coherency_line_size")) {
            out.push((level, Cache { bytes, ways, line }));
        }
    }
    out
}

/// Bytes of CPU 0's L1 data cache ([`FALLBACK_L1D`]'s where Linux does not say).
pub fn l1d_bytes() -> usize {
    host_caches().iter().find(|(level, _)| *level == 1).map_or(FALLBACK_L1D.bytes, |(_, c)| c.bytes)
}
