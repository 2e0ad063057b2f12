//! Generates the `.nn` parser from `grammar/nn.lalrpop` into `OUT_DIR`, and builds the
//! runtime's kernels as a C static library (`runtime/clib`) that `nnc compile --emit lib`
//! embeds in the libraries it writes.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=grammar");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .set_out_dir(&out_dir)
        .emit_rerun_directives(true)
        .process()
        .expect("grammar/nn.lalrpop must generate a parser");
    build_runtime_library(&out_dir);
}

/// Build `runtime/clib` (release, its own target directory so the outer build's lock is not
/// needed) and leave `libnnc_runtime.a` in `OUT_DIR`. A compiler without it still works; only
/// `--emit lib` then reports that the library is missing, with the reason below.
fn build_runtime_library(out_dir: &Path) {
    println!("cargo::rustc-check-cfg=cfg(nnc_runtime_library)");
    for watched in ["runtime/src", "runtime/clib", "runtime/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let (host, target) = (std::env::var("HOST").unwrap_or_default(), std::env::var("TARGET").unwrap_or_default());
    let reason = if host != target {
        format!("cross-compiling ({host} -> {target}); the library is built for the host only")
    } else {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let target_dir = out_dir.join("runtime-library");
        let status = Command::new(cargo)
            .args(["build", "--release", "--offline", "--quiet", "-p", "nnc-runtime-clib", "--manifest-path"])
            .arg(manifest_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // The outer build's flags for this crate's own compilation are not the library's.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            // Built for the host, in `release/` of its own target directory.
            .env_remove("CARGO_BUILD_TARGET")
            .status();
        match status {
            Ok(s) if s.success() => {
                let built = target_dir.join("release").join("libnnc_runtime_clib.a");
                match std::fs::copy(&built, out_dir.join("libnnc_runtime.a")) {
                    Ok(_) => {
                        println!("cargo:rustc-cfg=nnc_runtime_library");
                        return;
                    }
                    Err(e) => format!("{}: {e}", built.display()),
                }
            }
            Ok(s) => format!("`cargo build -p nnc-runtime-clib` failed ({s})"),
            Err(e) => format!("could not run cargo: {e}"),
        }
    };
    println!("cargo:warning=nnc is built without the runtime library for `--emit lib`: {reason}");
    println!("cargo:rustc-env=NNC_RUNTIME_LIBRARY_MISSING={reason}");
}
