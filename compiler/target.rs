//! What the compiler knows about the CPU it generates code for: the data caches and the
//! register tile of the GEMM microkernel. Tiling and layout selection derive their choices
//! from this, analytically; nothing is searched or timed.

use std::fmt;

pub use nnc_runtime::cpu::Cache;

/// The host CPU's model name (`/proc/cpuinfo`), recorded with every measurement.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())))
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The CPU a model is compiled for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTarget {
    pub l1d: Cache,
    pub l2: Cache,
    /// The last-level cache, if there is one beyond L2.
    pub l3: Option<Cache>,
    /// Whether matrix products call the runtime's microkernels (else Cranelift's own tile).
    pub ukernels: bool,
    /// The register tile `MR × NR` of the GEMM that runs matrix products.
    pub mr: usize,
    pub nr: usize,
    /// The runtime's narrower tile width for products with at most that many columns (16
    /// with AVX-512: one vector per row), if it has one; same `mr`.
    pub narrow_nr: Option<usize>,
    /// The runtime's middle tile width (24, on CPUs that run AVX-512 in 256-bit halves), for
    /// products whose columns it fills clearly better than `nr`; same `mr`.
    pub mid_nr: Option<usize>,
    /// Whether products of bf16 values run on the runtime's bf16 GEMM microkernel
    /// (AVX512_BF16) rather than on the f32 kernel on the widened values (exact in f32):
    /// decided, or `None` for where the CPU has it and it is faster
    /// ([`CpuTarget::bf16_products`] measures that only when a bf16 product asks).
    pub bf16_kernel: Option<bool>,
    /// Whether products with pruned constant weights may run on the runtime's sparse kernels
    /// (with the runtime's kernels only; `--sparse-kernels off` keeps the dense ones).
    pub sparse_kernels: bool,
    /// Kernels to use wherever they can compute a node, whatever the cost model says
    /// (`--kernels`, for comparisons).
    pub forced_kernels: crate::kernel_plan::KernelSet,
}

/// The shortest slab of `k` a product whose reduction is longer than the L1 rule's slab
/// gets from the runtime's microkernels (all of the reduction up to the slab's length): this
/// many steps per MiB of L2, and never fewer than this; 1024 with a 1 MiB L2 or less, 2048
/// with 2 MiB (a 32-wide B micro-panel an eighth of L2). Every slab after the first adds to
/// C, which the microkernel loads and stores again: with C larger than L2 (1024³: 4 MiB)
/// each slab is one more trip of C through L3. On Zen 4 (1 MiB L2), 1024³ on one thread
/// took 20.5–21.4 ms in slabs of 160 (the L1 rule), 19.2–20.2 in slabs of 512 and 19.0 in
/// one slab of 1024 (9.7–9.9 → 9.5–9.7 ms on two threads), and the transformer's layer went
/// 2.10 → 2.04 ms (512 and 1024 alike); ResNet-18 and MobileNetV2 measured ties. On the Xeon
/// (2 MiB L2), 2048³ took 109.8–121.0 ms (median of four 116.9) in slabs of 1024 and
/// 110.9–115.3 (113.8) in one of 2048, 134–137 against 141–142 GFLOP/s as a matmul in
/// `compare_openblas.py`; ResNet-18 a tie. The B micro-panel then no longer fits L1 and
/// streams from L2, prefetched a few steps ahead by the microkernel. BLIS and OpenBLAS use
/// slabs of 256–512 for single precision on AVX2 and AVX-512 cores.
pub const LONG_SLAB_KC: usize = 1024;

/// The most of L2 the packed block of A may take, whatever the cache's size. The rule below
/// gives A every L2 way but the B micro-panel's and one; on the 1 MiB L2 of Zen 4 that is
/// 832–896 KiB, but on a Xeon's 2 MiB L2 (Sapphire Rapids class) it is 1.75 MiB, and there
/// 1024³ on one thread took a median 14.0 ms with that block against 13.3 with 768 KiB
/// (6 alternations) and, on two threads, 7.05 against 6.67 ms with 832 KiB, while ResNet-18
/// and MobileNetV2 measured ties (and 256–768 KiB the same as 896 on 1024³). With long
/// slabs the B micro-panels (128 KiB at `kc` = 1024) stream through L2 as well, next to the
/// one being prefetched (the runtime's `Store::prefetch` pointer) and C's tiles,
/// so a block that fills L2 loses lines to them. The cap is Zen 4's block, which keeps
/// its tiles as they were.
pub const MAX_A_BLOCK_BYTES: usize = 896 << 10;

/// Rows and columns of the Cranelift-generated GEMM's register tile (`jit::lower`): 12 `f32x4`
/// accumulators fit x86-64's 16 xmm registers with room for two vectors of B and one of A.
pub const CRANELIFT_TILE: (usize, usize) = (6, 8);

/// The L2 assumed when the host does not describe its own (the L1d: `runtime::cpu::FALLBACK_L1D`).
const FALLBACK_L2: Cache = Cache { bytes: 1 << 20, ways: 16, line: 64 };

impl CpuTarget {
    /// This machine, as Linux describes its caches in `/sys` (fallbacks elsewhere), with the
    /// microkernel the runtime selected from the CPU's features.
    pub fn host(ukernels: bool) -> CpuTarget {
        let caches = nnc_runtime::cpu::host_caches();
        let find = |level: usize| caches.iter().find(|(l, _)| *l == level).map(|(_, c)| *c);
        let (mr, nr) = if ukernels { nnc_runtime::gemm::microkernel_shape() } else { CRANELIFT_TILE };
        let (_, narrow, mid) = nnc_runtime::gemm::microkernel_widths();
        let (narrow_nr, mid_nr) = if ukernels { (narrow, mid) } else { (None, None) };
        // Measured only when a bf16 product is planned: f32 models pay nothing for it.
        let bf16_kernel = if ukernels { None } else { Some(false) };
        CpuTarget { l1d: find(1).unwrap_or(nnc_runtime::cpu::FALLBACK_L1D), l2: find(2).unwrap_or(FALLBACK_L2), l3: find(3), ukernels, mr, nr, narrow_nr, mid_nr, bf16_kernel, sparse_kernels: ukernels, forced_kernels: Default::default() }
    }

    /// A fixed machine for tests and snapshots, independent of the host: 48 KiB 12-way L1d,
    /// 2 MiB 16-way L2, 32 MiB 16-way L3 and the AVX-512 8×32 microkernel (8×16 for narrow
    /// products).
    pub fn reference() -> CpuTarget {
        CpuTarget {
            l1d: Cache { bytes: 48 << 10, ways: 12, line: 64 },
            l2: Cache { bytes: 2 << 20, ways: 16, line: 64 },
            l3: Some(Cache { bytes: 32 << 20, ways: 16, line: 64 }),
            ukernels: true,
            mr: 8,
            nr: 32,
            narrow_nr: Some(16),
            mid_nr: None,
            bf16_kernel: Some(false),
            sparse_kernels: true,
            forced_kernels: Default::default(),
        }
    }

    /// Whether products of bf16 values run on the bf16 kernel (see [`CpuTarget::bf16_kernel`]).
    pub fn bf16_products(&self) -> bool {
        self.bf16_kernel.unwrap_or_else(nnc_runtime::gemm::bf16_products_pay)
    }

    /// Cache blocking for an `m × k` by `k × n` product on this target (see [`Tile`]).
    ///
    /// The loop nest is Goto's: for each `nc` block of B's columns, each `kc` slab, each `mc`
    /// block of A's rows, the microkernel walks `nr`-column micro-panels of B (outer) and
    /// `mr`-row micro-panels of A (inner). So one `kc × nr` micro-panel of B is reused from L1
    /// by every A micro-panel of the block, the `mc × kc` block of A is reused from L2 by every
    /// B micro-panel, and the `kc × nc` block of B from L3 by every A block. Each level is
    /// sized by whole cache ways (set-associative caches evict per set, so a buffer keeps its
    /// lines only if it owns enough ways in every set):
    ///
    /// - L1: the B micro-panel takes `wb` ways, each streaming A micro-panel `⌈wb·mr/nr⌉`
    ///   ways (the two grow together with `kc`), one way stays free for C; the largest `wb`
    ///   that fits sets `kc = wb·way_bytes / (nr·4)`. With the runtime's microkernels a
    ///   longer reduction takes at least [`LONG_SLAB_KC`] per MiB of L2 instead (fewer trips
    ///   of C).
    /// - L2: the B micro-panel takes its ways and one stays free; the A block gets the rest,
    ///   at most [`MAX_A_BLOCK_BYTES`]: `mc = min(wa·way_bytes, cap) / (kc·4)`, rounded down
    ///   to whole micro-panels.
    /// - L3 (if any): the same for the B block with the A block's ways reserved; capped at
    ///   4096 columns so the per-thread packing buffer stays at most `kc·4096` floats.
    ///
    /// Each size is then clamped to the problem, so small products get small blocks. The
    /// Cranelift-generated GEMM packs only B's micro-panels and reads A in place, so for it
    /// only `kc` blocks anything (`mc` and `nc` are the whole product).
    pub fn gemm_tile(&self, m: usize, n: usize, k: usize) -> Tile {
        const F32: usize = 4;
        let (mr, nr) = (self.mr, self.nr_for(n));
        let l1 = self.l1d;
        let b_ways = (1..l1.ways).rev().find(|&wb| wb + (wb * mr).div_ceil(nr) < l1.ways).unwrap_or(1);
        let kc = (b_ways * l1.way_bytes() / (nr * F32)).max(1);
        // A reduction longer than that slab takes longer ones with the runtime's kernels (see
        // [`LONG_SLAB_KC`]), and the blocks below are sized for the slab it really gets;
        // shorter ones keep the blocking they had.
        let long_slab = (LONG_SLAB_KC * self.l2.bytes / (1 << 20)).clamp(LONG_SLAB_KC, MAX_TILE_FIELD);
        let kc = if self.ukernels && k > kc { kc.max(long_slab).min(k) } else { kc };
        let l2 = self.l2;
        let b_panel_ways = (kc * nr * F32).div_ceil(l2.way_bytes());
        let a_ways = l2.ways.saturating_sub(1 + b_panel_ways).max(1);
        let a_block_bytes = (a_ways * l2.way_bytes()).min(MAX_A_BLOCK_BYTES);
        let mc = (a_block_bytes / (kc * F32) / mr * mr).max(mr);
        let nc = match self.l3 {
            Some(l3) => {
                let a_block_ways = (mc * kc * F32).div_ceil(l3.way_bytes());
                let b_ways = l3.ways.saturating_sub(1 + a_block_ways).max(1);
                (b_ways * l3.way_bytes() / (kc * F32) / nr * nr).clamp(nr, 4096)
            }
            None => 4096,
        };
        let (m_all, n_all) = (m.next_multiple_of(mr), n.next_multiple_of(nr));
        if !self.ukernels {
            return Tile { mr, nr, kc: kc.min(k.max(1)), mc: m_all, nc: n_all };
        }
        Tile { mr, nr, kc: kc.min(k.max(1)), mc: mc.min(m_all), nc: nc.min(n_all) }
    }
}

impl CpuTarget {
    /// The register tile's width for a product with `n` columns (the runtime picks the same).
    pub fn nr_for(&self, n: usize) -> usize {
        nnc_runtime::gemm::tile_width_for(n, self.nr, self.narrow_nr, self.mid_nr)
    }
}

/// Cache blocking of one matrix product: the microkernel's register tile `mr × nr`, the depth
/// `kc` of a packed slab, and the `mc` rows of A and `nc` columns of B packed at once.
/// Printed in IR dumps as `tile="8x32 kc=256 mc=1792 nc=4096"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub mr: usize,
    pub nr: usize,
    pub kc: usize,
    pub mc: usize,
    pub nc: usize,
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} kc={} mc={} nc={}", self.mr, self.nr, self.kc, self.mc, self.nc)
    }
}

/// The largest value of any tile field (`nnc_runtime::gemm` clamps its blocking the same way).
pub const MAX_TILE_FIELD: usize = 1 << 14;

impl std::str::FromStr for Tile {
    type Err = String;

    fn from_str(s: &str) -> Result<Tile, String> {
        let bad = || format!("a tile reads `MRxNR kc=K mc=M nc=N`, not `{s}`");
        let mut parts = s.split_whitespace();
        let (mr, nr) = parts.next().and_then(|t| t.split_once('x')).ok_or_else(bad)?;
        // Bounded as the runtime's blocking is, so a tile read from IR text means the same
        // blocking to the packing done at compile time and to the GEMM that reads the packs.
        let num = |v: &str| v.parse::<usize>().ok().filter(|&v| (1..=MAX_TILE_FIELD).contains(&v)).ok_or_else(bad);
        let mut field = |key: &str| -> Result<usize, String> { num(parts.next().and_then(|p| p.strip_prefix(key)).and_then(|p| p.strip_prefix('=')).ok_or_else(bad)?) };
        let (kc, mc, nc) = (field("kc")?, field("mc")?, field("nc")?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Tile { mr: num(mr)?, nr: num(nr)?, kc, mc, nc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analytic_blocking_on_the_reference_machine() {
        let t = CpuTarget::reference();
        // L1: 64 sets × 64 B = 4 KiB a way; 8 ways for B and 2 for A (8·8/32) leave 2 of 12.
        // kc = 8·4096 / (32·4) = 256, which a longer reduction raises to LONG_SLAB_KC per
        // MiB of L2: 2048.
        // L2: 128 KiB a way; B's 256 KiB panel takes 2, 1 stays free, A would get 13 (1.63
        // MiB) but is capped at MAX_A_BLOCK_BYTES: mc = 917504 / (2048·4) = 112. L3 (2 MiB a
        // way): A takes 1, 1 free, B 14 ways → 3584 columns, in whole tiles.
        assert_eq!(t.gemm_tile(100_000, 100_000, 100_000), Tile { mr: 8, nr: 32, kc: 2048, mc: 112, nc: 3584 });
        // A 1 MiB L2 (Zen 4) gets slabs of 1024, and so does a smaller one.
        let zen4 = CpuTarget { l2: Cache { bytes: 1 << 20, ways: 16, line: 64 }, ..t.clone() };
        assert_eq!(zen4.gemm_tile(100_000, 100_000, 100_000).kc, 1024);
        let small = CpuTarget { l2: Cache { bytes: 256 << 10, ways: 4, line: 64 }, ..t.clone() };
        assert_eq!(small.gemm_tile(100_000, 100_000, 100_000).kc, 1024);
        // Clamped to small problems; a reduction within the L1 slab keeps it (and the blocks
        // it sets).
        assert_eq!(t.gemm_tile(24, 3136, 144), Tile { mr: 8, nr: 32, kc: 144, mc: 24, nc: 3136 });
        assert_eq!(t.gemm_tile(4096, 4096, 256), Tile { mr: 8, nr: 32, kc: 256, mc: 896, nc: 4096 });
        // A reduction between the two slabs takes one slab of all of it, the blocks sized for
        // that: mc = 917504 / (300·4), in whole tiles.
        assert_eq!(t.gemm_tile(4096, 4096, 300), Tile { mr: 8, nr: 32, kc: 300, mc: 760, nc: 4096 });
        // Cranelift's 6×8 tile: B takes 6 ways and A ⌈6·6/8⌉ = 5, 11 of 12: kc = 6·4096/32.
        let cl = CpuTarget { ukernels: false, mr: 6, nr: 8, ..t };
        assert_eq!(cl.gemm_tile(100_000, 100_000, 100_000).kc, 768);
    }

    #[test]
    fn tiles_print_and_parse_back() {
        let t = Tile { mr: 8, nr: 32, kc: 256, mc: 1792, nc: 4096 };
        assert_eq!(t.to_string(), "8x32 kc=256 mc=1792 nc=4096");
        assert_eq!(t.to_string().parse::<Tile>(), Ok(t));
        assert!("8x32 kc=0 mc=1 nc=1".parse::<Tile>().is_err());
        assert!("8x32 kc=1 mc=1".parse::<Tile>().is_err());
    }
}
