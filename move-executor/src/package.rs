//! Compiling a Move package against the standard library and the framework, from the sources
//! embedded in the binary: `duet move build` works wherever the binary is, not only beside the
//! source tree it was built from.

use std::io::Write;

use move_compiler::shared::NumericalAddress;

use crate::compiler::{compile, framework_named_addresses, CompiledModuleBytes};

/// The sources of the standard library (`std/…`) and the framework (`duet/…`), as the build
/// script bundled them.
static SOURCES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/framework_sources.bin"));

/// Compiles the package made of `targets` (file paths) against the standard library and the
/// framework, with the extra `named` addresses (`("example", "0xab…")`); returns the targets'
/// modules in dependency order, ready to publish as one bundle.
///
/// # Errors
/// The dependency sources cannot be written out, a named address does not parse, or the
/// compiler's diagnostics, rendered as text.
pub fn compile_package(
    targets: Vec<String>,
    named: &[(&str, &str)],
) -> Result<Vec<CompiledModuleBytes>, String> {
    let mut addresses = framework_named_addresses();
    for (name, address) in named {
        let address = NumericalAddress::parse_str(address)
            .map_err(|error| format!("named address {name} = {address}: {error}"))?;
        addresses.insert((*name).to_owned(), address);
    }
    // The directory lives until the compiler is done with its files.
    let DependencySources { directory: _directory, files } = DependencySources::write()
        .map_err(|error| format!("cannot write the framework sources: {error}"))?;
    compile(targets, files, addresses)
}

/// The embedded sources, written out for the compiler (which reads files) into a directory of
/// this call's own: created afresh under a random name, readable by this user only, removed
/// when dropped. Nothing another user of the machine put in the temporary directory is ever read
/// or written.
struct DependencySources {
    directory: tempfile::TempDir,
    files: Vec<String>,
}

impl DependencySources {
    fn write() -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("duet-move-sources-");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        // From here on the directory is removed when `sources` is dropped, on errors too.
        let directory = builder.tempdir()?;
        let mut sources = Self { directory, files: Vec::new() };
        for (name, text) in crate::embedded_pairs(SOURCES) {
            let path = sources.directory.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .write_all(text)?;
            sources.files.push(path.to_string_lossy().into_owned());
        }
        Ok(sources)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_package_compiles_against_the_embedded_sources_which_are_then_removed() {
        let sources = super::DependencySources::write().unwrap();
        assert!(sources.files.iter().any(|file| file.ends_with("duet/eth.move")));
        assert!(sources.files.iter().any(|file| file.ends_with("std/vector.move")));
        let directory = sources.directory.path().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&directory).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "readable by this user only");
        }
        drop(sources);
        assert!(!directory.exists(), "removed once compiled");
        // Each call writes into a directory of its own.
        let (first, second) = (
            super::DependencySources::write().unwrap(),
            super::DependencySources::write().unwrap(),
        );
        assert_ne!(first.directory.path(), second.directory.path());
        drop((first, second));

        let package = tempfile::tempdir().unwrap();
        let source = package.path().join("pay.move");
        std::fs::write(
            &source,
            "module example::pay { public entry fun pay(from: &signer, to: address, amount: u64) \
             { duet::eth::transfer(from, to, (amount as u128)); } }",
        )
        .unwrap();
        let modules = super::compile_package(
            vec![source.to_string_lossy().into_owned()],
            &[("example", "0xab")],
        );
        let modules = modules.unwrap();
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].0, "pay");
        let error = super::compile_package(vec!["/nonexistent/x.move".to_owned()], &[]);
        assert!(error.is_err());
    }
}
