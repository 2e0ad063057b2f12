//! The net every executor and every reader of user input is tested with, shared by the test
//! suite, the fuzz targets (`fuzz/`) and the differential campaign
//! (`tests/differential_campaign.rs`): random valid models, the differential check across
//! every backend, and the fuzz targets' bodies. Nothing in the compiler depends on it.

pub mod differential;
pub mod fuzz;
pub mod random_model;
