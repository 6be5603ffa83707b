//! Compiles the Move standard library and the Duet framework (`framework/sources`) with the Move
//! compiler, into `$OUT_DIR/framework.bin`, which the crate embeds; and puts their sources into
//! `$OUT_DIR/framework_sources.bin`, which the crate embeds too, so that packages compile
//! against them wherever the binary runs.
//!
//! Format of both: pairs (a module's name and its bytecode; a file's name and its text), each as
//! a 4-byte little-endian length and the bytes.

#[path = "src/compiler.rs"]
#[allow(dead_code, unreachable_pub)] // Only part of the module is used here.
mod compiler;

use std::path::{Path, PathBuf};

fn main() {
    // Read at run time: a build script binary can be reused by a clone at another path (cargo
    // shares the target directory between clones), so a path compiled into it could be stale.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sources = manifest.join("framework/sources");
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-changed=src/compiler.rs");
    let standard = move_stdlib::move_stdlib_files();
    let framework = framework_files(&sources).expect("the framework sources are readable");
    let targets = standard.iter().chain(&framework).cloned().collect();
    let modules = compiler::compile(targets, Vec::new(), compiler::framework_named_addresses())
        .unwrap_or_else(|diagnostics| {
            panic!("the Move framework does not compile:\n{diagnostics}")
        });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    write_pairs(&out.join("framework.bin"), modules);
    // Each source as `std/NAME` or `duet/NAME`.
    let named_sources = |directory: &str, files: &[String]| {
        files
            .iter()
            .map(|file| {
                let path = PathBuf::from(file);
                let name = path.file_name().expect("a file").to_string_lossy().into_owned();
                let text = std::fs::read(&path).expect("the sources are readable");
                (format!("{directory}/{name}"), text)
            })
            .collect::<Vec<_>>()
    };
    let mut texts = named_sources("std", &standard);
    texts.extend(named_sources("duet", &framework));
    write_pairs(&out.join("framework_sources.bin"), texts);
}

/// Writes `pairs` in the embedded format.
fn write_pairs(target: &Path, pairs: Vec<(String, Vec<u8>)>) {
    let mut out = Vec::new();
    for (name, bytes) in pairs {
        for part in [name.as_bytes(), &bytes] {
            out.extend_from_slice(&u32::try_from(part.len()).expect("small").to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    std::fs::write(target, out).expect("OUT_DIR is writable");
}

/// The `.move` files of the framework's source directory.
///
/// # Errors
/// The directory cannot be read.
fn framework_files(framework: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(framework)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "move") {
            files.push(path.to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}
