//! Compiles the Move standard library and the Duet framework (`framework/sources`) with the Move
//! compiler, into `$OUT_DIR/framework.bin`, which the crate embeds.
//!
//! Format: for each module, its name and its bytecode, each as a 4-byte little-endian length and
//! the bytes.

#[path = "src/compiler.rs"]
#[allow(dead_code, unreachable_pub)] // Only part of the module is used here.
mod compiler;

use std::path::PathBuf;

fn main() {
    // Read at run time: a build script binary can be reused by a clone at another path (cargo
    // shares the target directory between clones), so a path compiled into it could be stale.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sources = manifest.join("framework/sources");
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-changed=src/compiler.rs");
    let mut targets = move_stdlib::move_stdlib_files();
    targets
        .extend(compiler::framework_files(&sources).expect("the framework sources are readable"));
    let modules = compiler::compile(targets, Vec::new(), compiler::framework_named_addresses())
        .unwrap_or_else(|diagnostics| {
            panic!("the Move framework does not compile:\n{diagnostics}")
        });
    let mut out = Vec::new();
    for (name, bytes) in modules {
        for part in [name.as_bytes(), &bytes] {
            out.extend_from_slice(&u32::try_from(part.len()).expect("small").to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    let target =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("framework.bin");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
