//! The accelerator's instruction set: what the lowering emits, the machine executes and
//! `--emit isa` lists. Documented for users in `docs/accelerator.md`.
//!
//! Three in-order queues run concurrently, as in TVM's VTA: **load** (DMA into the
//! scratchpad and accumulators), **compute** (the array and the vector unit) and **store**
//! (accumulators through the activation unit to DRAM). They synchronise with dependency
//! tokens: every instruction may pop a token from, or push one to, each neighbouring queue
//! (load ↔ compute ↔ store). A pop waits until the neighbour's matching push has finished.
//! That is how double buffering is expressed: the load of tile `t + 2` pops the token that
//! compute pushed when it finished reading tile `t`'s buffer.
//!
//! Every instruction is 32 bytes: opcode, dependency flags, then fields little-endian.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Deps {
    /// Wait for a token from the previous queue (load for compute, compute for store).
    pub pop_prev: bool,
    /// Wait for a token from the next queue (compute for load, store for compute).
    pub pop_next: bool,
    pub push_prev: bool,
    pub push_next: bool,
}

impl Deps {
    fn bits(self) -> u8 {
        self.pop_prev as u8 | (self.pop_next as u8) << 1 | (self.push_prev as u8) << 2 | (self.push_next as u8) << 3
    }

    fn from_bits(b: u8) -> Deps {
        Deps { pop_prev: b & 1 != 0, pop_next: b & 2 != 0, push_prev: b & 4 != 0, push_next: b & 8 != 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Load,
    Compute,
    Store,
}

impl Queue {
    pub fn name(self) -> &'static str {
        match self {
            Queue::Load => "load",
            Queue::Compute => "compute",
            Queue::Store => "store",
        }
    }
}

/// One instruction. Addresses: DRAM in bytes, scratchpad and accumulator in elements.
#[derive(Clone, Debug, PartialEq)]
pub enum Insn {
    /// DMA `rows × cols` elements of type `src` from DRAM (row stride `stride` elements)
    /// into the scratchpad, row-major from `spad`.
    LoadSpad { deps: Deps, dram: u64, spad: u32, rows: u32, cols: u32, stride: u32, src: DramType },
    /// DMA a block of the implicit im2col matrix of a convolution (descriptor `conv`): rows
    /// `m0..m0+rows` (output pixels) and columns `k0..k0+cols` (channel × tap), gathered by
    /// the DMA's address generator from the input image at `dram`. Padding reads as zero.
    LoadIm2col { deps: Deps, dram: u64, spad: u32, conv: u32, m0: u32, rows: u32, k0: u32, cols: u32 },
    /// Weight-stationary: shift the `k × n` block at `spad` (row stride `stride`) into the
    /// array's weight registers (rows `0..k`, columns `0..n`; the rest hold zero).
    Preload { deps: Deps, spad: u32, k: u32, n: u32, stride: u32 },
    /// Multiply: `acc[m × n] += A[m × k] · B[k × n]`, A at `a` (row stride `a_stride`), and
    /// B the preloaded weights (ws) or the block at `b` (os, row stride `b_stride`).
    /// Accumulator rows are `acc_stride` apart. Without `accumulate` the sums start from zero
    /// (Gemmini's `compute_preloaded` versus `compute_accumulated`).
    Compute { deps: Deps, accumulate: bool, a: u32, a_stride: u32, b: u32, b_stride: u32, acc: u32, acc_stride: u32, m: u32, k: u32, n: u32 },
    /// Run graph node `node` on the vector unit, DRAM to DRAM.
    Vector { deps: Deps, node: u32 },
    /// `rows × cols` accumulators at `acc` (row stride `acc_stride`) through the activation
    /// unit (descriptor `act`, channel offset `c0`) to DRAM at `dram`, element `(r, c)` at
    /// `r · row_stride + c · col_stride` elements.
    Store { deps: Deps, acc: u32, acc_stride: u32, dram: u64, rows: u32, cols: u32, row_stride: u32, col_stride: u32, act: u32, c0: u32 },
    /// Wait until every earlier instruction of every queue has finished (between layers).
    Fence,
}

/// The element type of a DRAM operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DramType {
    I8,
    I32,
    F32,
}

impl DramType {
    pub fn bytes(self) -> u64 {
        match self {
            DramType::I8 => 1,
            DramType::I32 | DramType::F32 => 4,
        }
    }

    fn code(self) -> u8 {
        match self {
            DramType::I8 => 0,
            DramType::I32 => 1,
            DramType::F32 => 2,
        }
    }

    fn from_code(c: u8) -> Option<DramType> {
        Some(match c {
            0 => DramType::I8,
            1 => DramType::I32,
            2 => DramType::F32,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DramType::I8 => "i8",
            DramType::I32 => "i32",
            DramType::F32 => "f32",
        }
    }
}

impl Insn {
    pub fn queue(&self) -> Queue {
        match self {
            Insn::LoadSpad { .. } | Insn::LoadIm2col { .. } => Queue::Load,
            Insn::Preload { .. } | Insn::Compute { .. } | Insn::Vector { .. } | Insn::Fence => Queue::Compute,
            Insn::Store { .. } => Queue::Store,
        }
    }

    pub fn deps(&self) -> Deps {
        match self {
            Insn::LoadSpad { deps, .. }
            | Insn::LoadIm2col { deps, .. }
            | Insn::Preload { deps, .. }
            | Insn::Compute { deps, .. }
            | Insn::Vector { deps, .. }
            | Insn::Store { deps, .. } => *deps,
            Insn::Fence => Deps::default(),
        }
    }

    pub fn deps_mut(&mut self) -> Option<&mut Deps> {
        match self {
            Insn::LoadSpad { deps, .. }
            | Insn::LoadIm2col { deps, .. }
            | Insn::Preload { deps, .. }
            | Insn::Compute { deps, .. }
            | Insn::Vector { deps, .. }
            | Insn::Store { deps, .. } => Some(deps),
            Insn::Fence => None,
        }
    }

    pub fn mnemonic(&self) -> &'static str {
        match self {
            Insn::LoadSpad { .. } => "load.spad",
            Insn::LoadIm2col { .. } => "load.im2col",
            Insn::Preload { .. } => "preload",
            Insn::Compute { .. } => "compute",
            Insn::Vector { .. } => "vector",
            Insn::Store { .. } => "store",
            Insn::Fence => "fence",
        }
    }

    /// The 32-byte binary form.
    pub fn encode(&self) -> [u8; 32] {
        self.encode_checked().0
    }

    /// The encoding, and whether every field fitted its width (a field too wide for its
    /// bytes is truncated in the encoding).
    fn encode_checked(&self) -> ([u8; 32], bool) {
        let mut b = Encoder { buf: [0; 32], at: 2, fits: true };
        let (opcode, deps) = match self {
            Insn::LoadSpad { deps, dram, spad, rows, cols, stride, src } => {
                b.u64(*dram).u32(*spad).u32(*rows).u32(*cols).u32(*stride).u8(src.code());
                (1, deps)
            }
            Insn::LoadIm2col { deps, dram, spad, conv, m0, rows, k0, cols } => {
                b.u64(*dram).u32(*spad).u32(*conv).u32(*m0).u24(*rows).u32(*k0).u24(*cols);
                (2, deps)
            }
            Insn::Preload { deps, spad, k, n, stride } => {
                b.u32(*spad).u32(*k).u32(*n).u32(*stride);
                (4, deps)
            }
            Insn::Compute { deps, accumulate, a, a_stride, b: bb, b_stride, acc, acc_stride, m, k, n } => {
                b.u32(*a).u24(*a_stride).u32(*bb).u24(*b_stride).u32(*acc).u24(*acc_stride).u24(*m).u16(*k).u16(*n).u8(*accumulate as u8);
                (5, deps)
            }
            Insn::Vector { deps, node } => {
                b.u32(*node);
                (6, deps)
            }
            Insn::Store { deps, acc, acc_stride, dram, rows, cols, row_stride, col_stride, act, c0 } => {
                b.u32(*acc).u16(*acc_stride).u48(*dram).u24(*rows).u16(*cols).u24(*row_stride).u24(*col_stride).u16(*act).u24(*c0);
                (7, deps)
            }
            Insn::Fence => (8, &Deps { pop_prev: false, pop_next: false, push_prev: false, push_next: false }),
        };
        b.buf[0] = opcode;
        b.buf[1] = deps.bits();
        let fits = b.fits;
        (b.buf, fits)
    }

    /// Read back what [`Insn::encode`] wrote; `None` for an unknown opcode.
    pub fn decode(bytes: &[u8; 32]) -> Option<Insn> {
        let mut d = Decoder { buf: bytes, at: 2 };
        let deps = Deps::from_bits(bytes[1]);
        Some(match bytes[0] {
            1 => Insn::LoadSpad { deps, dram: d.u64(), spad: d.u32(), rows: d.u32(), cols: d.u32(), stride: d.u32(), src: DramType::from_code(d.u8())? },
            2 => Insn::LoadIm2col { deps, dram: d.u64(), spad: d.u32(), conv: d.u32(), m0: d.u32(), rows: d.u24(), k0: d.u32(), cols: d.u24() },
            4 => Insn::Preload { deps, spad: d.u32(), k: d.u32(), n: d.u32(), stride: d.u32() },
            5 => {
                let (a, a_stride, b, b_stride, acc, acc_stride, m, k, n) = (d.u32(), d.u24(), d.u32(), d.u24(), d.u32(), d.u24(), d.u24(), d.u16(), d.u16());
                Insn::Compute { deps, accumulate: d.u8() != 0, a, a_stride, b, b_stride, acc, acc_stride, m, k, n }
            }
            6 => Insn::Vector { deps, node: d.u32() },
            7 => Insn::Store { deps, acc: d.u32(), acc_stride: d.u16(), dram: d.u48(), rows: d.u24(), cols: d.u16(), row_stride: d.u24(), col_stride: d.u24(), act: d.u16(), c0: d.u24() },
            8 => Insn::Fence,
            _ => return None,
        })
    }

    /// A binary program as `--emit isa -o FILE.bin` writes it: 32-byte instructions back to
    /// back. Errors name the offset of the first bad instruction.
    pub fn decode_program(bytes: &[u8]) -> Result<Vec<Insn>, String> {
        if !bytes.len().is_multiple_of(32) {
            return Err(format!("a program is a whole number of 32-byte instructions, but has {} bytes", bytes.len()));
        }
        bytes
            .chunks_exact(32)
            .enumerate()
            .map(|(i, chunk)| {
                let word: &[u8; 32] = chunk.try_into().expect("chunks are 32 bytes");
                Insn::decode(word).ok_or_else(|| format!("instruction {i} (offset {}) has unknown opcode {} or operand type", 32 * i, word[0]))
            })
            .collect()
    }

    /// Whether every field fits its encoded width (the lowering checks each instruction, so
    /// a model too large for the encoding is an error, not a silently wrong program).
    pub fn fits_encoding(&self) -> bool {
        self.encode_checked().1
    }
}

struct Encoder {
    buf: [u8; 32],
    at: usize,
    /// No field so far was wider than its bytes.
    fits: bool,
}

impl Encoder {
    fn bytes(&mut self, v: u64, n: usize) -> &mut Self {
        self.fits &= n >= 8 || v >> (8 * n) == 0;
        self.buf[self.at..self.at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        self.at += n;
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(v as u64, 1)
    }
    fn u16(&mut self, v: u32) -> &mut Self {
        self.bytes(v as u64, 2)
    }
    fn u24(&mut self, v: u32) -> &mut Self {
        self.bytes(v as u64, 3)
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(v as u64, 4)
    }
    fn u48(&mut self, v: u64) -> &mut Self {
        self.bytes(v, 6)
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(v, 8)
    }
}

struct Decoder<'a> {
    buf: &'a [u8; 32],
    at: usize,
}

impl Decoder<'_> {
    fn bytes(&mut self, n: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        u64::from_le_bytes(b)
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1) as u8
    }
    fn u16(&mut self) -> u32 {
        self.bytes(2) as u32
    }
    fn u24(&mut self) -> u32 {
        self.bytes(3) as u32
    }
    fn u32(&mut self) -> u32 {
        self.bytes(4) as u32
    }
    fn u48(&mut self) -> u64 {
        self.bytes(6)
    }
    fn u64(&mut self) -> u64 {
        self.bytes(8)
    }
}

impl fmt::Display for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.pop_prev {
            parts.push("pop_prev");
        }
        if self.pop_next {
            parts.push("pop_next");
        }
        if self.push_prev {
            parts.push("push_prev");
        }
        if self.push_next {
            parts.push("push_next");
        }
        if !parts.is_empty() {
            write!(f, "  [{}]", parts.join(" "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Insn {
    /// `load.spad   dram=0x1000 spad=0 rows=64 cols=27 stride=27 i8  [push_next]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<12}", self.mnemonic())?;
        match self {
            Insn::LoadSpad { dram, spad, rows, cols, stride, src, .. } => write!(f, "dram={dram:#x} spad={spad} rows={rows} cols={cols} stride={stride} {}", src.name())?,
            Insn::LoadIm2col { dram, spad, conv, m0, rows, k0, cols, .. } => write!(f, "dram={dram:#x} spad={spad} conv=#{conv} m0={m0} rows={rows} k0={k0} cols={cols}")?,
            Insn::Preload { spad, k, n, stride, .. } => write!(f, "spad={spad} k={k} n={n} stride={stride}")?,
            Insn::Compute { accumulate, a, a_stride, b, b_stride, acc, acc_stride, m, k, n, .. } => {
                write!(f, "a={a}/{a_stride} b={b}/{b_stride} acc={acc}/{acc_stride} m={m} k={k} n={n}{}", if *accumulate { " +=" } else { "" })?
            }
            Insn::Vector { node, .. } => write!(f, "node=#{node}")?,
            Insn::Store { acc, acc_stride, dram, rows, cols, row_stride, col_stride, act, c0, .. } => {
                write!(f, "acc={acc}/{acc_stride} dram={dram:#x} rows={rows} cols={cols} strides={row_stride},{col_stride} act=#{act} c0={c0}")?
            }
            Insn::Fence => {}
        }
        write!(f, "{}", self.deps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_round_trips_through_its_encoding() {
        let deps = Deps { pop_prev: true, pop_next: false, push_prev: false, push_next: true };
        let all = [
            Insn::LoadSpad { deps, dram: 0x0012_3456_789a, spad: 77, rows: 300, cols: 27, stride: 4096, src: DramType::I8 },
            Insn::LoadIm2col { deps, dram: 0x40, spad: 5, conv: 70_000, m0: 100_000, rows: 256, k0: 1152, cols: 128 },
            Insn::Preload { deps, spad: 1, k: 16, n: 16, stride: 64 },
            Insn::Compute { deps, accumulate: true, a: 1, a_stride: 64, b: 2, b_stride: 16, acc: 3, acc_stride: 16, m: 4096, k: 256, n: 256 },
            Insn::Vector { deps, node: 42 },
            Insn::Store { deps, acc: 3, acc_stride: 256, dram: 0xffff_ffff, rows: 4096, cols: 256, row_stride: 1, col_stride: 3136, act: 2, c0: 100_000 },
            Insn::Fence,
        ];
        for insn in all {
            assert!(insn.fits_encoding(), "{insn}");
            assert_eq!(Insn::decode(&insn.encode()).as_ref(), Some(&insn));
        }
    }

    /// `fits_encoding` (the encoder's own overflow check) says exactly whether an
    /// instruction survives encoding and decoding, for fields of every size.
    #[test]
    fn fitting_is_surviving_the_round_trip() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut field = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Sizes around every encoded width: 1 to 32 bits.
            (x >> 8) as u32 >> (x % 32)
        };
        let deps = Deps::default();
        for _ in 0..20_000 {
            let insns = [
                Insn::Compute { deps, accumulate: field() % 2 == 0, a: field(), a_stride: field(), b: field(), b_stride: field(), acc: field(), acc_stride: field(), m: field(), k: field(), n: field() },
                Insn::Store { deps, acc: field(), acc_stride: field(), dram: field() as u64 * field() as u64, rows: field(), cols: field(), row_stride: field(), col_stride: field(), act: field(), c0: field() },
                Insn::LoadIm2col { deps, dram: field() as u64, spad: field(), conv: field(), m0: field(), rows: field(), k0: field(), cols: field() },
            ];
            for insn in insns {
                assert_eq!(insn.fits_encoding(), Insn::decode(&insn.encode()).as_ref() == Some(&insn), "{insn}");
            }
        }
    }
}
