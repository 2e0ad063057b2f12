//! The grid of `--vary KEY=V1,V2,...`: every combination of the axes' values, each applied
//! to a base configuration; and `--shard K/N`, the K-th of N equal parts of it.

use crate::accel::AccelConfig;
use std::ops::Range;

/// The most configurations one sweep may have.
pub const MAX_POINTS: u64 = 1_000_000;

/// One varied key and its values, as given (`array` takes `RxC`).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// The axes in the order given; the last varies fastest.
#[derive(Clone, Debug)]
pub struct Grid {
    pub axes: Vec<Axis>,
    len: usize,
    /// Accumulator rows (of the array's width, 32-bit) every design keeps, when the array's
    /// width varies and the accumulator's size does not: see [`Grid::scale_accumulator`].
    accumulator_rows: Option<u64>,
}

impl Grid {
    /// Check the axes against `base`: every key exists, every value is one the key takes, no
    /// key is varied twice, and the grid is at most [`MAX_POINTS`].
    pub fn new(axes: Vec<Axis>, base: &AccelConfig) -> Result<Grid, String> {
        let varies = |k: &str| axes.iter().any(|a| a.key == k);
        if varies("array") && (varies("rows") || varies("cols")) {
            return Err("--vary array sets rows and cols; vary either `array` or `rows`/`cols`, not both".into());
        }
        let mut len: u64 = 1;
        for (i, axis) in axes.iter().enumerate() {
            if axes[..i].iter().any(|a| a.key == axis.key) {
                return Err(format!("--vary {} is given twice; put all its values in one list", axis.key));
            }
            if axis.values.is_empty() {
                return Err(format!("--vary {} has no values", axis.key));
            }
            for v in &axis.values {
                let mut c = base.clone();
                apply(&mut c, &axis.key, v).map_err(|e| format!("--vary {}={v}: {e}", axis.key))?;
            }
            len = len.saturating_mul(axis.values.len() as u64);
        }
        if len > MAX_POINTS {
            let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
            return Err(format!("the grid has {} configurations ({}), more than the {MAX_POINTS} a sweep takes", len, sizes.join(" × ")));
        }
        Ok(Grid { axes, len: len as usize, accumulator_rows: None })
    }

    /// Hardware sizes its accumulator in rows of the array's width (the TPU v1: 4096 rows of
    /// 256 int32; Gemmini: `ACC_ROWS × DIM`), so when a grid varies the array's columns but
    /// not `accumulator_kib`, each design keeps `base`'s number of rows: `edge`'s 128 KiB for
    /// 32 columns becomes 1 MiB for 256. Without this, every wide array would be refused for
    /// an accumulator that cannot hold one tile.
    pub fn scale_accumulator(&mut self, base: &AccelConfig) {
        let varies = |k: &str| self.axes.iter().any(|a| a.key == k);
        if (varies("array") || varies("cols")) && !varies("accumulator_kib") {
            self.accumulator_rows = Some((base.accumulator_kib * 1024 / (4 * base.cols as u64)).max(1));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values of point `i` (mixed radix, last axis fastest), one per axis.
    pub fn point(&self, mut i: usize) -> Vec<&str> {
        let mut out = vec![""; self.axes.len()];
        for (slot, axis) in out.iter_mut().zip(&self.axes).rev() {
            let n = axis.values.len();
            *slot = &axis.values[i % n];
            i /= n;
        }
        out
    }

    /// Point `i` applied to `base`, validated.
    pub fn config(&self, base: &AccelConfig, i: usize) -> Result<AccelConfig, String> {
        let mut c = base.clone();
        let values = self.point(i);
        for (axis, v) in self.axes.iter().zip(&values) {
            apply(&mut c, &axis.key, v)?;
        }
        if let Some(rows) = self.accumulator_rows {
            c.accumulator_kib = (rows * 4 * c.cols as u64).div_ceil(1024);
        }
        c.validate().map_err(|e| format!("the configuration {} is invalid: {e}", super::sweep::describe(self, i)))?;
        Ok(c)
    }

    /// The points of shard `k` of `n` (1-based): consecutive, and together the whole grid.
    pub fn shard(&self, k: usize, n: usize) -> Range<usize> {
        debug_assert!(1 <= k && k <= n);
        // At most 1e6 points × n ≤ 1e6 shards: no overflow in u64.
        let at = |j: usize| ((self.len as u64 * j as u64) / n as u64) as usize;
        at(k - 1)..at(k)
    }
}

/// Set one key, `array` as `RxC`.
fn apply(c: &mut AccelConfig, key: &str, value: &str) -> Result<(), String> {
    if key == "array" {
        let (r, cols) = parse_array(value)?;
        c.rows = r;
        c.cols = cols;
        return Ok(());
    }
    if key == "name" {
        return Err("`name` labels a configuration; it is not a design parameter".into());
    }
    c.set(key, value)
}

/// `RxC` with both sizes at least 1.
pub fn parse_array(s: &str) -> Result<(u32, u32), String> {
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| format!("expected ROWSxCOLS such as 16x16, got `{s}`"))?;
    let dim = |v: &str| v.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| format!("`{v}` is not a positive array size (in `{s}`)"));
    Ok((dim(r)?, dim(c)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(key: &str, values: &[&str]) -> Axis {
        Axis { key: key.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn edge() -> AccelConfig {
        AccelConfig::preset("edge").unwrap()
    }

    #[test]
    fn points_enumerate_every_combination_last_axis_fastest() {
        let g = Grid::new(vec![axis("array", &["8x8", "16x16"]), axis("dataflow", &["ws", "os"]), axis("scratchpad_kib", &["256", "512", "1024"])], &edge()).unwrap();
        assert_eq!(g.len(), 12);
        assert_eq!(g.point(0), ["8x8", "ws", "256"]);
        assert_eq!(g.point(1), ["8x8", "ws", "512"]);
        assert_eq!(g.point(3), ["8x8", "os", "256"]);
        assert_eq!(g.point(11), ["16x16", "os", "1024"]);
        let c = g.config(&edge(), 11).unwrap();
        assert_eq!((c.rows, c.cols, c.scratchpad_kib), (16, 16, 1024));
        assert_eq!(c.dataflow, crate::accel::config::Dataflow::Os);
    }

    #[test]
    fn shards_partition_the_grid() {
        let g = Grid::new(vec![axis("rows", &["4", "8", "16", "32", "64", "128", "256"])], &edge()).unwrap();
        for n in 1..=9 {
            let mut all = Vec::new();
            for k in 1..=n {
                let r = g.shard(k, n);
                assert!(r.len() <= g.len().div_ceil(n));
                all.extend(r);
            }
            assert_eq!(all, (0..g.len()).collect::<Vec<_>>(), "{n} shards");
        }
    }

    #[test]
    fn bad_axes_are_refused_with_the_reason() {
        let err = |axes: Vec<Axis>| Grid::new(axes, &edge()).unwrap_err();
        assert!(err(vec![axis("bogus", &["1"])]).contains("unknown configuration key `bogus`"));
        assert!(err(vec![axis("rows", &[])]).contains("has no values"));
        assert!(err(vec![axis("array", &["0x4"])]).contains("not a positive array size"));
        assert!(err(vec![axis("dataflow", &["diagonal"])]).contains("dataflow=diagonal"));
        assert!(err(vec![axis("rows", &["8"]), axis("rows", &["16"])]).contains("given twice"));
        assert!(err(vec![axis("array", &["8x8"]), axis("cols", &["16"])]).contains("not both"));
        let thousand: Vec<String> = (1..=1000).map(|v| v.to_string()).collect();
        let big = |k: &str| Axis { key: k.into(), values: thousand.clone() };
        assert!(err(vec![big("rows"), big("cols"), axis("dataflow", &["ws", "os"])]).contains("2000000 configurations"));
    }

    #[test]
    fn the_accumulator_keeps_its_rows_as_the_array_widens() {
        let mut base = edge();
        base.scratchpad_kib = 4096;
        let mut g = Grid::new(vec![axis("array", &["16x16", "256x256"])], &base).unwrap();
        g.scale_accumulator(&base);
        // edge: 128 KiB of 32 columns = 1024 rows.
        assert_eq!(g.config(&base, 0).unwrap().accumulator_kib, 64);
        assert_eq!(g.config(&base, 1).unwrap().accumulator_kib, 1024);
        let mut fixed = Grid::new(vec![axis("array", &["16x16"]), axis("accumulator_kib", &["32"])], &edge()).unwrap();
        fixed.scale_accumulator(&edge());
        assert_eq!(fixed.config(&edge(), 0).unwrap().accumulator_kib, 32);
    }

    #[test]
    fn an_invalid_combination_names_the_point() {
        let g = Grid::new(vec![axis("array", &["256x256"]), axis("scratchpad_kib", &["64"])], &edge()).unwrap();
        let e = g.config(&edge(), 0).unwrap_err();
        assert!(e.contains("array=256x256 scratchpad_kib=64") && e.contains("cannot hold"), "{e}");
    }
}
