//! Exploring accelerator designs (SPEC §6): the grid of configurations `nnc sweep` walks,
//! timing a model on each without computing values, the Pareto front over latency, energy
//! and area, and the CPU's energy model that `nnc compare` sets beside them.

pub mod cpu_energy;
pub mod grid;
pub mod pareto;
pub mod sweep;

pub use grid::{Axis, Grid};
pub use sweep::{time_design, Design};
