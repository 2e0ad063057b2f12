//! The modeled systolic-array accelerator (SPEC §4): configuration, instruction set,
//! lowering, the functional-and-timing machine and its reports. `docs/accelerator.md`
//! describes it for users.

pub mod config;
pub mod isa;
pub mod lower;
pub mod program;
pub mod machine;
pub mod timing;
pub mod report;
pub mod tiling;

pub use config::AccelConfig;
pub use lower::{lower, lower_for_timing};
pub use program::Program;
pub use machine::{run, time, Outcome, Timing};
