//! Float storage: a `Vec<f32>`, or a buffer that starts on a cache line.
//!
//! A `Vec<f32>` is only as aligned as the allocator makes it (16 bytes from glibc's `malloc`
//! for large blocks), and cannot be reallocated at a larger alignment and freed soundly. The
//! JIT writes outputs straight into the tensors it returns, with the same 64-byte vector
//! stores it uses in its arena; into a 16-byte-aligned buffer every such store straddles two
//! cache lines (the 1024³ product ran no faster than with a copy out of the arena). So such
//! outputs live in whole cache lines ([`UnwrittenLines`]), and so do an executable's constants
//! and the runtime's B-panel packing buffers, which kernels load a line at a time
//! ([`Floats::zeroed_lines`], [`Floats::lines_copy_of`]); tensors made from a `Vec` keep it.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

/// Floats in a tensor, read and written as a slice.
#[derive(Clone)]
pub struct Floats(Repr);

#[derive(Clone)]
enum Repr {
    Vec(Vec<f32>),
    /// The first `len` floats of `lines` (initialized; the rest of the last lines may not be).
    Lines { lines: Vec<Line>, len: usize },
}

/// One cache line of floats: a `Vec` of these starts on a 64-byte boundary.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([MaybeUninit<f32>; Line::FLOATS]);

impl Line {
    const FLOATS: usize = 16;
}

/// Room for floats starting on a cache line, not yet written: what the JIT computes an
/// output into before it becomes a tensor's [`Floats`].
pub struct UnwrittenLines {
    lines: Vec<Line>,
    len: usize,
}

impl UnwrittenLines {
    /// Room for `len` floats and `extra` more past them (a kernel may store whole vectors
    /// there), in whole cache lines. Nothing is written: a fresh buffer costs no pass over
    /// its memory.
    pub fn new(len: usize, extra: usize) -> UnwrittenLines {
        let n = (len + extra).div_ceil(Line::FLOATS);
        let mut lines = Vec::with_capacity(n);
        // SAFETY: `Line` is uninitialized memory by type, and the capacity is `n`.
        unsafe { lines.set_len(n) };
        UnwrittenLines { lines, len }
    }

    /// The first float's address: writable for `len + extra` floats (rounded up to whole
    /// lines) as long as `self` lives, not moved by turning `self` into [`Floats`].
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.lines.as_mut_ptr().cast()
    }

    /// `floats`' own storage as room for `len` floats and `extra` more, when it is exactly
    /// the lines [`UnwrittenLines::new`]`(len, extra)` would allocate: a result of an earlier
    /// run handed back, so a loop that runs a model again and again computes into the same
    /// memory. A fresh large buffer is fresh pages to the kernel: a 2048² output faulted in
    /// 4,096 pages on every run, 112 against 104 ms for the product. `None` for any other
    /// storage (a `Vec`, or lines of another length).
    pub fn reclaim(floats: Floats, len: usize, extra: usize) -> Option<UnwrittenLines> {
        match floats.0 {
            Repr::Lines { lines, .. } if lines.len() == (len + extra).div_ceil(Line::FLOATS) => Some(UnwrittenLines { lines, len }),
            _ => None,
        }
    }

    /// The floats, once written.
    ///
    /// # Safety
    /// All `len` floats from [`UnwrittenLines::as_mut_ptr`] have been written.
    pub unsafe fn assume_written(self) -> Floats {
        Floats(Repr::Lines { lines: self.lines, len: self.len })
    }
}

impl Floats {
    /// No floats.
    pub const fn new() -> Floats {
        Floats(Repr::Vec(Vec::new()))
    }

    /// `len` zeros starting on a cache line, for data kernels read with whole-line vector
    /// loads (packed weights: from a `Vec`, every 64-byte load of a panel spanned two lines,
    /// and the transformer layer ran 1.410 ms against 1.314 aligned). From zeroed memory, as
    /// `vec![0.0; len]` gets it: no pass over the buffer.
    pub fn zeroed_lines(len: usize) -> Floats {
        let n = len.div_ceil(Line::FLOATS);
        if n == 0 {
            return Floats(Repr::Lines { lines: Vec::new(), len: 0 });
        }
        let layout = std::alloc::Layout::array::<Line>(n).expect("a buffer that fits the address space");
        // SAFETY: `layout` has a nonzero size; the vector takes the allocation with the layout
        // it was made with (`n` lines), all of them written (zeros).
        unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<Line>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Floats(Repr::Lines { lines: Vec::from_raw_parts(p, n, n), len })
        }
    }

    /// Room for at least `len` floats on cache lines, as a reused scratch buffer needs: a
    /// shorter buffer is replaced by [`Floats::zeroed_lines`]`(len)` (its contents are not
    /// kept), a long enough one is left as it is.
    pub fn ensure_lines(&mut self, len: usize) {
        if self.len() < len {
            *self = Floats::zeroed_lines(len);
        }
    }

    /// A copy of `values` starting on a cache line (see [`Floats::zeroed_lines`]), written
    /// once.
    pub fn lines_copy_of(values: &[f32]) -> Floats {
        let mut room = UnwrittenLines::new(values.len(), 0);
        // SAFETY: the room holds `values.len()` floats, all written here.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), room.as_mut_ptr(), values.len());
            room.assume_written()
        }
    }

    /// The floats as a `Vec` (a copy unless they are one).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Repr::Vec(v) => v,
            Repr::Lines { .. } => self.to_vec(),
        }
    }
}

impl Default for Floats {
    fn default() -> Floats {
        Floats::new()
    }
}

impl From<Vec<f32>> for Floats {
    fn from(v: Vec<f32>) -> Floats {
        Floats(Repr::Vec(v))
    }
}

impl Deref for Floats {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &self.0 {
            Repr::Vec(v) => v,
            // SAFETY: `lines` holds at least `len` floats (`Line` is `repr(C)` floats with
            // no padding: 64 bytes, 64-aligned), the first `len` written (`assume_written`),
            // borrowed for `self`'s lifetime.
            Repr::Lines { lines, len } => unsafe { std::slice::from_raw_parts(lines.as_ptr().cast(), *len) },
        }
    }
}

impl DerefMut for Floats {
    fn deref_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            Repr::Vec(v) => v,
            // SAFETY: as `deref`, borrowed mutably.
            Repr::Lines { lines, len } => unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), *len) },
        }
    }
}

impl PartialEq for Floats {
    fn eq(&self, other: &Floats) -> bool {
        self[..] == other[..]
    }
}

impl fmt::Debug for Floats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self[..].fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_on_a_cache_line_and_read_as_their_length() {
        for (len, extra) in [(0, 0), (1, 0), (16, 0), (17, 16), (1000, 16)] {
            let mut room = UnwrittenLines::new(len, extra);
            let p = room.as_mut_ptr();
            assert_eq!(p as usize % 64, 0);
            // SAFETY: room for `len + extra` floats.
            unsafe { (0..len + extra).for_each(|i| p.add(i).write(i as f32)) };
            // SAFETY: all `len` written.
            let mut f = unsafe { room.assume_written() };
            assert_eq!(f.as_ptr(), p.cast_const());
            assert_eq!(f.len(), len);
            f.iter_mut().for_each(|v| *v *= 2.0);
            let v = f.clone().into_vec();
            assert_eq!(v, (0..len).map(|i| 2.0 * i as f32).collect::<Vec<_>>());
            assert_eq!(f, Floats::from(v));
        }
    }

    #[test]
    fn scratch_grows_on_cache_lines_and_is_kept_when_long_enough() {
        let mut scratch = Floats::new();
        scratch.ensure_lines(1000);
        let p = scratch.as_ptr();
        assert!(scratch.len() == 1000 && (p as usize).is_multiple_of(64));
        scratch.ensure_lines(10);
        assert_eq!((scratch.as_ptr(), scratch.len()), (p, 1000));
        scratch.ensure_lines(5000);
        assert!(scratch.len() == 5000 && (scratch.as_ptr() as usize).is_multiple_of(64));
    }

    #[test]
    fn zeroed_and_copied_lines_start_on_a_cache_line() {
        for len in [0usize, 1, 15, 16, 17, 1000, 40_000] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let copy = Floats::lines_copy_of(&values);
            assert_eq!(&copy[..], &values[..]);
            let mut zeros = Floats::zeroed_lines(len);
            assert!(zeros.iter().all(|&v| v == 0.0) && zeros.len() == len);
            zeros.copy_from_slice(&values);
            for f in [&copy, &zeros] {
                assert_eq!(f.as_ptr() as usize % 64, 0, "{len} floats");
                assert_eq!(f.to_vec(), values);
            }
        }
    }
}
