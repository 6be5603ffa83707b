//! Compiling Move source with the Move compiler, against the standard library and the Duet
//! framework. Also used by the build script, which compiles the framework itself.

use std::collections::BTreeMap;
use std::path::Path;

use move_compiler::compiled_unit::CompiledUnitEnum;
use move_compiler::diagnostics::report_diagnostics_to_buffer;
use move_compiler::shared::NumericalAddress;
use move_compiler::Compiler;

/// A compiled module: its name and its bytecode.
pub type CompiledModuleBytes = (String, Vec<u8>);

/// The named addresses of the standard library (`std`) and the framework (`duet`), both `0x1`.
///
/// # Panics
/// Never: `0x1` parses.
#[must_use]
pub fn framework_named_addresses() -> BTreeMap<String, NumericalAddress> {
    let mut named = move_stdlib::move_stdlib_named_addresses();
    named.insert("duet".to_owned(), NumericalAddress::parse_str("0x1").expect("a valid address"));
    named
}

/// The `.move` files of the framework's source directory.
///
/// # Errors
/// The directory cannot be read.
pub fn framework_files(framework: &Path) -> std::io::Result<Vec<String>> {
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

/// Compiles `targets` (file paths) against `dependencies` (file paths, compiled but not
/// returned), with `named` addresses; returns the targets' modules in dependency order.
///
/// # Errors
/// The compiler's diagnostics, rendered as text.
pub fn compile(
    targets: Vec<String>,
    dependencies: Vec<String>,
    named: BTreeMap<String, NumericalAddress>,
) -> Result<Vec<CompiledModuleBytes>, String> {
    let (files, result) = Compiler::from_files(targets, dependencies, named)
        .build()
        .map_err(|error| format!("the Move compiler failed: {error:#}"))?;
    let units = match result {
        Ok((units, _warnings)) => units,
        Err(diagnostics) => {
            return Err(String::from_utf8_lossy(&report_diagnostics_to_buffer(&files, diagnostics))
                .into_owned())
        }
    };
    let mut modules = Vec::new();
    for unit in units {
        let unit = unit.into_compiled_unit();
        let bytes = unit.serialize(None);
        match unit {
            CompiledUnitEnum::Module(module) => modules.push((module.name.to_string(), bytes)),
            CompiledUnitEnum::Script(script) => {
                return Err(format!("scripts are not supported: {}", script.name));
            }
        }
    }
    Ok(modules)
}

/// Where the framework's Move sources are.
#[must_use]
pub fn framework_source_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("framework/sources")
}

/// Compiles the package made of `targets` (file paths) against the standard library and the
/// framework, with the extra `named` addresses (`("example", "0xab…")`); returns the targets'
/// modules in dependency order, ready to publish as one bundle.
///
/// # Errors
/// A named address does not parse, or the compiler's diagnostics, rendered as text.
pub fn compile_package(
    targets: Vec<String>,
    named: &[(&str, &str)],
) -> Result<Vec<CompiledModuleBytes>, String> {
    let mut dependencies = move_stdlib::move_stdlib_files();
    dependencies.extend(
        framework_files(&framework_source_dir())
            .map_err(|error| format!("the framework sources cannot be read: {error}"))?,
    );
    let mut addresses = framework_named_addresses();
    for (name, address) in named {
        let address = NumericalAddress::parse_str(address)
            .map_err(|error| format!("named address {name} = {address}: {error}"))?;
        addresses.insert((*name).to_owned(), address);
    }
    compile(targets, dependencies, addresses)
}
