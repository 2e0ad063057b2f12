//! The `nnc` binary: everything lives in the library's `cli` module.
fn main() {
    std::process::exit(nnc::cli::main());
}
