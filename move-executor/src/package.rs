//! Compiling a Move package against the standard library and the framework, from the sources
//! embedded in the binary: `duet move build` works wherever the binary is, not only beside the
//! source tree it was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    let dependencies = dependency_files()?;
    let mut addresses = framework_named_addresses();
    for (name, address) in named {
        let address = NumericalAddress::parse_str(address)
            .map_err(|error| format!("named address {name} = {address}: {error}"))?;
        addresses.insert((*name).to_owned(), address);
    }
    compile(targets, dependencies, addresses)
}

/// The compiler reads files: the embedded sources, written once per process into a directory
/// named after their contents under the system's temporary directory. A file found there with
/// other contents is written again, so what compiles is always what the binary carries.
fn dependency_files() -> Result<Vec<String>, String> {
    static FILES: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let sources = crate::embedded_pairs(SOURCES);
            let digest = duet_types::keccak256(SOURCES);
            let directory = std::env::temp_dir()
                .join(format!("duet-move-sources-{}", &digest.to_string()[2..18]));
            sources
                .iter()
                .map(|(name, text)| {
                    let path = directory.join(name);
                    write_if_different(&path, text).map_err(|error| {
                        format!("cannot write the framework sources to {}: {error}", path.display())
                    })?;
                    Ok(path.to_string_lossy().into_owned())
                })
                .collect()
        })
        .clone()
}

/// Makes `path` hold `text`, through a file of this process renamed into place, so that a
/// concurrent reader never sees half a file.
fn write_if_different(path: &Path, text: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|current| current == text) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut staging = PathBuf::from(path);
    staging.set_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&staging, text)?;
    std::fs::rename(&staging, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_sources_are_the_framework_and_a_package_compiles_against_them() {
        let files = super::dependency_files().unwrap();
        assert!(files.iter().any(|file| file.ends_with("duet/eth.move")), "{files:?}");
        assert!(files.iter().any(|file| file.ends_with("std/vector.move")), "{files:?}");

        let package = std::env::temp_dir().join(format!("duet-package-{}", std::process::id()));
        // A file with other contents is written again.
        let copy = package.join("copy/eth.move");
        super::write_if_different(&copy, b"module 0x1::eth {}").unwrap();
        super::write_if_different(&copy, b"the real one").unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"the real one");

        let source = package.join("pay.move");
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
        std::fs::remove_dir_all(&package).unwrap();
        let modules = modules.unwrap();
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].0, "pay");
        let error = super::compile_package(vec!["/nonexistent/x.move".to_owned()], &[]);
        assert!(error.is_err());
    }
}
