//! The accelerator's configuration (SPEC §4): array size and dataflow, clock, element type,
//! on-chip memories, DRAM, fold overlap and the per-event energy table. Read from a preset
//! or a TOML file, then overridden key by key (`--set`, `--array`, `--dataflow`, `--memory`),
//! then validated as a whole.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataflow {
    /// Weight-stationary: a `rows × cols` block of weights sits in the array; input rows stream.
    Ws,
    /// Output-stationary: a `rows × cols` block of outputs accumulates in the array; the
    /// reduction dimension streams.
    Os,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    /// int8 operands, int32 accumulators: needs a graph from `--quantize int8`.
    Int8,
    /// bfloat16 operands (rounded when loaded into the scratchpad), f32 accumulators.
    Bf16,
    F32,
}

impl ElemType {
    /// Bytes of one operand element in the scratchpad.
    pub fn bytes(self) -> u64 {
        match self {
            ElemType::Int8 => 1,
            ElemType::Bf16 => 2,
            ElemType::F32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElemType::Int8 => "int8",
            ElemType::Bf16 => "bf16",
            ElemType::F32 => "f32",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryModel {
    /// Unbounded DRAM bandwidth and no latency: the array alone sets the time.
    Ideal,
    /// `dram_gbps` and `dram_latency_cycles` apply.
    Modeled,
}

/// Picojoules per event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Energy {
    /// One multiply-accumulate in the array.
    pub mac_pj: f64,
    /// One byte read from or written to the scratchpad.
    pub scratchpad_pj_per_byte: f64,
    /// One byte read from or written to the accumulator memory.
    pub accumulator_pj_per_byte: f64,
    /// One byte moved to or from DRAM.
    pub dram_pj_per_byte: f64,
    /// One element operation of the vector unit (ops the array cannot run).
    pub vector_op_pj: f64,
}

impl Energy {
    /// Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V): int8 multiply
    /// 0.2 pJ + int32 add 0.1 pJ per MAC; fp32 multiply 3.7 + add 0.9; bf16 taken as the
    /// fp16 multiply 1.1 + fp32 add 0.9. SRAM: a 64-bit read of a 32 KiB bank ≈ 20 pJ, so
    /// 2.5 pJ/byte for banks of that size. DRAM: 1.3 nJ per 64-bit access, 162.5 pJ/byte.
    /// The vector unit's element op is one fp32 add, 0.9 pJ.
    pub fn for_dtype(dtype: ElemType) -> Energy {
        let mac_pj = match dtype {
            ElemType::Int8 => 0.3,
            ElemType::Bf16 => 2.0,
            ElemType::F32 => 4.6,
        };
        Energy { mac_pj, scratchpad_pj_per_byte: 2.5, accumulator_pj_per_byte: 2.5, dram_pj_per_byte: 162.5, vector_op_pj: 0.9 }
    }
}

impl Default for Energy {
    fn default() -> Energy {
        Energy::for_dtype(ElemType::F32)
    }
}

/// Square millimetres per component, for the design sweep's area estimate (`[area]`).
///
/// From the TPU v1 (Jouppi et al., ISCA 2017; 28 nm, die ≤ 331 mm²), whose floor plan gives
/// the 256×256 int8 matrix unit 24% of the die, the 24 MiB Unified Buffer 29% and the 4 MiB
/// of accumulators 6%: 1.21e-3 mm² per int8 MAC cell, 3.91e-3 mm² per KiB of buffer SRAM,
/// 4.85e-3 per KiB of accumulator SRAM. Float cells scale the int8 cell by Horowitz's 45 nm
/// areas (ISSCC 2014): int8 multiply 282 µm² + int32 add 137 = 419; fp16 multiply 1640 +
/// fp32 add 4184 = 5824 (bf16, 13.9×); fp32 multiply 7700 + add 4184 = 11884 (28.4×). Only
/// the array and the on-chip memories are counted: DMA, control and I/O are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Area {
    pub mac_int8_mm2: f64,
    pub mac_bf16_mm2: f64,
    pub mac_f32_mm2: f64,
    pub scratchpad_mm2_per_kib: f64,
    pub accumulator_mm2_per_kib: f64,
}

impl Default for Area {
    fn default() -> Area {
        let int8 = 0.24 * 331.0 / 65536.0;
        Area {
            mac_int8_mm2: int8,
            mac_bf16_mm2: int8 * 5824.0 / 419.0,
            mac_f32_mm2: int8 * 11884.0 / 419.0,
            scratchpad_mm2_per_kib: 0.29 * 331.0 / (24.0 * 1024.0),
            accumulator_mm2_per_kib: 0.06 * 331.0 / (4.0 * 1024.0),
        }
    }
}

/// Every key of SPEC §4. Missing keys take the `edge` preset's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccelConfig {
    /// The preset this configuration started from (informational, in reports).
    pub name: String,
    pub rows: u32,
    pub cols: u32,
    pub dataflow: Dataflow,
    pub clock_mhz: f64,
    pub dtype: ElemType,
    pub scratchpad_kib: u64,
    pub accumulator_kib: u64,
    pub dram_gbps: f64,
    pub dram_latency_cycles: u64,
    pub fold_overlap: bool,
    /// Activations stay in the scratchpad between layers (the TPU v1's 24 MiB Unified
    /// Buffer); only weights and tables come from DRAM. When false, every layer reads its
    /// input from and writes its output to DRAM (Gemmini's `mvin`/`mvout`).
    pub activations_on_chip: bool,
    pub memory: MemoryModel,
    /// Skip folds whose block of weights is entirely zero (pruned models): they are never
    /// preloaded or multiplied. `false` runs every fold, for comparison.
    pub skip_zero_weights: bool,
    pub energy: Energy,
    pub area: Area,
}

impl Default for AccelConfig {
    fn default() -> AccelConfig {
        AccelConfig::preset("edge").expect("edge is a preset")
    }
}

pub const PRESETS: &[&str] = &["tpu-v1", "gemmini", "edge"];

impl AccelConfig {
    /// `tpu-v1`: Jouppi et al., ISCA 2017. `gemmini`: Genc et al., DAC 2021, as configured
    /// by default (16×16 int8, 256 KiB scratchpad, 64 KiB accumulator, a 128-bit system bus
    /// at 1 GHz). `edge` (the default): a small f32 NPU of the kind in phone and MCU-class
    /// SoCs: 32×32 fp32 MACs at 800 MHz (1.6 TFLOP/s), 512 KiB scratchpad, 128 KiB of
    /// accumulators and one LPDDR4-class channel at 12.8 GB/s. f32, so every float model runs
    /// on it unquantized.
    pub fn preset(name: &str) -> Option<AccelConfig> {
        let base = |name: &str, rows, cols, dataflow, clock_mhz, dtype: ElemType, scratchpad_kib, accumulator_kib, dram_gbps| AccelConfig {
            name: name.to_string(),
            rows,
            cols,
            dataflow,
            clock_mhz,
            dtype,
            scratchpad_kib,
            accumulator_kib,
            dram_gbps,
            dram_latency_cycles: 100,
            fold_overlap: true,
            activations_on_chip: false,
            memory: MemoryModel::Modeled,
            skip_zero_weights: true,
            energy: Energy::for_dtype(dtype),
            area: Area::default(),
        };
        Some(match name {
            "tpu-v1" => {
                let mut c = base(name, 256, 256, Dataflow::Ws, 700.0, ElemType::Int8, 24 << 10, 4 << 10, 34.0);
                // A 24 MiB buffer is built from large banks: 100 pJ per 64-bit read of a
                // 1 MiB bank (Horowitz) is 12.5 pJ/byte.
                c.energy.scratchpad_pj_per_byte = 12.5;
                c.energy.accumulator_pj_per_byte = 12.5;
                c.activations_on_chip = true;
                c
            }
            "gemmini" => base(name, 16, 16, Dataflow::Ws, 1000.0, ElemType::Int8, 256, 64, 16.0),
            "edge" => base(name, 32, 32, Dataflow::Ws, 800.0, ElemType::F32, 512, 128, 12.8),
            _ => return None,
        })
    }

    /// A preset name or a TOML file (whose keys override the `edge` defaults, or those of
    /// the preset it names with `name = "..."`).
    pub fn load(spec: &str) -> Result<AccelConfig, String> {
        if let Some(c) = AccelConfig::preset(spec) {
            return Ok(c);
        }
        let path = std::path::Path::new(spec);
        if !spec.ends_with(".toml") && !path.exists() {
            return Err(format!("unknown accelerator preset `{spec}` (presets: {}; or give a .toml file)", PRESETS.join(", ")));
        }
        let bytes = nnc_runtime::read_regular_file(path).map_err(|e| format!("cannot read {spec}: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{spec} is not UTF-8 text"))?;
        AccelConfig::from_toml(&text, spec)
    }

    /// A configuration from TOML text; `spec` names it in messages.
    pub fn from_toml(text: &str, spec: &str) -> Result<AccelConfig, String> {
        // The full message points at the line and column.
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("{spec}: {}", e.to_string().trim_end()))?;
        let base = match table.get("name").and_then(|v| v.as_str()) {
            Some(n) => AccelConfig::preset(n).unwrap_or_default(),
            None => AccelConfig::default(),
        };
        let mut config = base;
        for (key, value) in &table {
            config.set_value(key, value.clone()).map_err(|e| format!("{spec}: {e}"))?;
        }
        Ok(config)
    }

    /// Override one key from text, as `--set KEY=VALUE` gives it (`energy.mac_pj=0.5`).
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        // TOML's own parser reads the value, so numbers, booleans and strings are spelt as in
        // a configuration file; a bare word is taken as a string (`--set dataflow=os`).
        let value = toml::from_str::<toml::Table>(&format!("v = {text}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(text.to_string()));
        match key.split_once('.') {
            Some((section, field)) => {
                let mut inner = toml::Table::new();
                inner.insert(field.to_string(), value);
                self.set_value(section, toml::Value::Table(inner))
            }
            None => self.set_value(key, value),
        }
    }

    /// Merge one top-level key through serde, so every key is checked by the same schema as
    /// a file. A new `dtype` brings its MAC energy along unless `energy.mac_pj` was changed
    /// from the old dtype's (`--set dtype=int8` on `edge` costs int8 MACs, not f32 ones).
    fn set_value(&mut self, key: &str, value: toml::Value) -> Result<(), String> {
        let old_dtype = self.dtype;
        self.merge_value(key, value)?;
        if self.dtype != old_dtype && self.energy.mac_pj == Energy::for_dtype(old_dtype).mac_pj {
            self.energy.mac_pj = Energy::for_dtype(self.dtype).mac_pj;
        }
        Ok(())
    }

    fn merge_value(&mut self, key: &str, value: toml::Value) -> Result<(), String> {
        let mut whole = toml::Table::try_from(&*self).map_err(|e| e.to_string())?;
        if !whole.contains_key(key) {
            return Err(format!("unknown configuration key `{key}` (keys: {})", whole.keys().cloned().collect::<Vec<_>>().join(", ")));
        }
        match (whole.get_mut(key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(updates)) => {
                for (k, v) in updates {
                    if !existing.contains_key(&k) {
                        return Err(format!("unknown configuration key `{key}.{k}` (keys: {})", existing.keys().map(|e| format!("{key}.{e}")).collect::<Vec<_>>().join(", ")));
                    }
                    existing.insert(k, v);
                }
            }
            (_, value) => {
                whole.insert(key.to_string(), value);
            }
        }
        *self = whole.try_into().map_err(|e: toml::de::Error| format!("`{key}`: {}", e.message()))?;
        Ok(())
    }

    /// Refuse configurations no hardware could have.
    pub fn validate(&self) -> Result<(), String> {
        if self.rows == 0 || self.cols == 0 {
            return Err(format!("the array must have at least one row and one column, not {}x{}", self.rows, self.cols));
        }
        if self.rows > 4096 || self.cols > 4096 {
            return Err(format!("an array of {}x{} is beyond what nnc models (at most 4096x4096)", self.rows, self.cols));
        }
        // Bounds that keep every cycle count far from overflowing a u64.
        if !(self.clock_mhz.is_finite() && (0.001..=1e6).contains(&self.clock_mhz)) {
            return Err(format!("clock_mhz must be between 0.001 and 1000000, not {}", self.clock_mhz));
        }
        if !(self.dram_gbps.is_finite() && (1e-3..=1e6).contains(&self.dram_gbps)) {
            return Err(format!("dram_gbps must be between 0.001 and 1000000, not {}", self.dram_gbps));
        }
        if self.dram_latency_cycles > 1_000_000_000 {
            return Err(format!("dram_latency_cycles must be at most 1000000000, not {}", self.dram_latency_cycles));
        }
        if self.scratchpad_kib > 1 << 20 || self.accumulator_kib > 1 << 20 {
            return Err("on-chip memories above 1 GiB are beyond what nnc models".to_string());
        }
        let a = &self.area;
        for (k, v) in [("mac_int8_mm2", a.mac_int8_mm2), ("mac_bf16_mm2", a.mac_bf16_mm2), ("mac_f32_mm2", a.mac_f32_mm2), ("scratchpad_mm2_per_kib", a.scratchpad_mm2_per_kib), ("accumulator_mm2_per_kib", a.accumulator_mm2_per_kib)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("area.{k} must be a non-negative number, not {v}"));
            }
        }
        let e = &self.energy;
        for (k, v) in [("mac_pj", e.mac_pj), ("scratchpad_pj_per_byte", e.scratchpad_pj_per_byte), ("accumulator_pj_per_byte", e.accumulator_pj_per_byte), ("dram_pj_per_byte", e.dram_pj_per_byte), ("vector_op_pj", e.vector_op_pj)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("energy.{k} must be a non-negative number, not {v}"));
            }
        }
        // The smallest tile is one fold: a rows × cols block of each operand (double-buffered)
        // and of the accumulators.
        let fold = (self.rows as u64) * (self.cols as u64);
        let spad_need = 2 * 2 * fold * self.dtype.bytes();
        if self.scratchpad_kib * 1024 < spad_need {
            return Err(format!(
                "a {} KiB scratchpad cannot hold one double-buffered {}x{} tile of {} operands ({} KiB needed)",
                self.scratchpad_kib,
                self.rows,
                self.cols,
                self.dtype.name(),
                spad_need.div_ceil(1024)
            ));
        }
        let acc_need = 2 * fold * 4;
        if self.accumulator_kib * 1024 < acc_need {
            return Err(format!("a {} KiB accumulator cannot hold one double-buffered {}x{} tile of 32-bit sums ({} KiB needed)", self.accumulator_kib, self.rows, self.cols, acc_need.div_ceil(1024)));
        }
        Ok(())
    }

    /// Microseconds that `cycles` take at the clock.
    pub fn latency_us(&self, cycles: u64) -> f64 {
        cycles as f64 / self.clock_mhz
    }

    /// The share of the array's peak that `macs` in `cycles` reach.
    pub fn utilization(&self, macs: u64, cycles: u64) -> f64 {
        let peak = cycles as f64 * self.rows as f64 * self.cols as f64;
        if peak > 0.0 {
            macs as f64 / peak
        } else {
            0.0
        }
    }

    /// DRAM bytes per clock cycle.
    pub fn dram_bytes_per_cycle(&self) -> f64 {
        self.dram_gbps * 1e3 / self.clock_mhz
    }

    /// Estimated silicon area of the array and on-chip memories, mm² (the `[area]` table).
    pub fn area_mm2(&self) -> f64 {
        let a = &self.area;
        let cell = match self.dtype {
            ElemType::Int8 => a.mac_int8_mm2,
            ElemType::Bf16 => a.mac_bf16_mm2,
            ElemType::F32 => a.mac_f32_mm2,
        };
        self.rows as f64 * self.cols as f64 * cell + self.scratchpad_kib as f64 * a.scratchpad_mm2_per_kib + self.accumulator_kib as f64 * a.accumulator_mm2_per_kib
    }

    pub fn scratchpad_elems(&self) -> u64 {
        self.scratchpad_kib * 1024 / self.dtype.bytes()
    }

    pub fn accumulator_elems(&self) -> u64 {
        self.accumulator_kib * 1024 / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_keys_override() {
        for p in PRESETS {
            AccelConfig::preset(p).unwrap().validate().unwrap();
        }
        let mut c = AccelConfig::preset("gemmini").unwrap();
        c.set("dataflow", "os").unwrap();
        c.set("rows", "8").unwrap();
        c.set("energy.mac_pj", "0.5").unwrap();
        c.set("fold_overlap", "false").unwrap();
        assert_eq!((c.dataflow, c.rows, c.energy.mac_pj, c.fold_overlap), (Dataflow::Os, 8, 0.5, false));
        assert!(c.set("bogus", "1").unwrap_err().contains("unknown configuration key `bogus`"));
        assert!(c.set("energy.bogus", "1").unwrap_err().contains("energy.bogus"));
        assert!(c.set("rows", "\"x\"").is_err());
        c.set("rows", "0").unwrap();
        assert!(c.validate().unwrap_err().contains("at least one row"));
    }

    #[test]
    fn a_new_dtype_brings_its_mac_energy_unless_it_was_set() {
        let mut c = AccelConfig::preset("edge").unwrap();
        c.set("dtype", "int8").unwrap();
        assert_eq!(c.energy.mac_pj, Energy::for_dtype(ElemType::Int8).mac_pj);
        c.set("energy.mac_pj", "0.7").unwrap();
        c.set("dtype", "bf16").unwrap();
        assert_eq!(c.energy.mac_pj, 0.7);
    }

    #[test]
    fn area_of_the_tpu_v1_matches_its_floor_plan() {
        // Matrix unit 24% + buffer 29% + accumulators 6% of a 331 mm² die.
        let tpu = AccelConfig::preset("tpu-v1").unwrap();
        assert!((tpu.area_mm2() - 0.59 * 331.0).abs() < 1e-9, "{}", tpu.area_mm2());
        let mut f32 = tpu.clone();
        f32.set("dtype", "f32").unwrap();
        assert!(f32.area_mm2() > 10.0 * tpu.area_mm2());
        let mut bad = tpu;
        assert!(bad.set("area.mac_int8_mm2", "-1").is_ok());
        assert!(bad.validate().unwrap_err().contains("area.mac_int8_mm2"));
    }

    #[test]
    fn scratchpad_must_hold_one_tile() {
        let mut c = AccelConfig::preset("tpu-v1").unwrap();
        c.scratchpad_kib = 64;
        assert!(c.validate().unwrap_err().contains("cannot hold one double-buffered 256x256 tile"));
    }
}
