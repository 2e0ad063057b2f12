//! The CPU's energy per inference for `nnc compare`: power × measured time.
//!
//! nnc cannot read the CPU's power, so it assumes one: by default each thread the JIT uses
//! draws [`WATTS_PER_CORE`], a server core's share of its package's rated power (an AMD
//! EPYC 9654, the Zen 4 part of this machine's family: 360 W TDP over 96 cores = 3.75 W).
//! Uncore, memory and idle power are left out, so this favours the CPU. `--cpu-watts W`
//! replaces the whole figure.

/// Watts per busy core (AMD EPYC 9654: 360 W / 96 cores).
pub const WATTS_PER_CORE: f64 = 360.0 / 96.0;

/// The power the model assumes for `threads` busy threads, or the user's figure.
pub fn cpu_watts(threads: usize, user: Option<f64>) -> f64 {
    user.unwrap_or(WATTS_PER_CORE * threads.max(1) as f64)
}

/// Energy in microjoules of a run of `seconds` at `watts`.
pub fn energy_uj(watts: f64, seconds: f64) -> f64 {
    watts * seconds * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_power_times_time() {
        assert_eq!(cpu_watts(2, None), 7.5);
        assert_eq!(cpu_watts(2, Some(10.0)), 10.0);
        assert!((energy_uj(3.75, 2e-3) - 7500.0).abs() < 1e-9);
    }
}
