//! The arguments a transaction (or Solidity, through the Move call precompile) gives a Move
//! function: plain values only, checked before the VM reads them.
//!
//! The VM makes any value from bytes: a second signer, or a struct (a coin, say), would be
//! forged, so a parameter must be a bool, an integer, an address, a `0x1::string::String`, or a
//! vector of those (or a reference to one), after one leading signer that is the sender. A
//! `String` holds UTF-8 by its module's invariant, which the VM does not check when it makes
//! one from bytes: every argument holding strings is read here first, and refused unless each
//! is UTF-8.

use duet_types::BcsReader;
use move_core_types::account_address::AccountAddress;
use move_core_types::resolver::MoveResolver;
use move_vm_runtime::session::{LoadedFunctionInstantiation, Session};
use move_vm_types::loaded_data::runtime_types::{CachedStructIndex, Type, TYPE_DEPTH_MAX};

use crate::{Failure, FRAMEWORK_ADDRESS};

/// The arguments of a call of `loaded` (named by `name`): the sender (`signer`) for its leading
/// signer, if it takes one, then the transaction's `given`.
pub(crate) fn call_arguments<'a, S: MoveResolver>(
    session: &Session<'_, '_, S>,
    loaded: &LoadedFunctionInstantiation,
    signer: &'a AccountAddress,
    given: &'a [Vec<u8>],
    name: impl Fn() -> String,
) -> Result<Vec<&'a [u8]>, Failure> {
    let kinds = Kinds { session, type_arguments: &loaded.type_arguments };
    let supplied = usize::from(loaded.parameters.first().is_some_and(is_signer));
    for (at, parameter) in loaded.parameters.iter().enumerate().skip(supplied) {
        let Some(kind) = kinds.plain(parameter, 0) else {
            return Err(Failure::Invalid(format!(
                "{}: parameter {at} cannot be given by a transaction: only bool, u8, u64, u128, \
                 address, 0x1::string::String and vectors of them can (and one leading signer, \
                 the sender's)",
                name()
            )));
        };
        let Some(argument) = given.get(at - supplied) else { continue };
        if kind.has_strings && !kinds.utf8(parameter, argument) {
            return Err(Failure::Invalid(format!(
                "{}: argument {} is not a BCS value of parameter {at}'s type with UTF-8 strings",
                name(),
                at - supplied
            )));
        }
    }
    let mut arguments: Vec<&[u8]> = Vec::with_capacity(given.len() + 1);
    if supplied == 1 {
        arguments.push(signer.as_ref());
    }
    arguments.extend(given.iter().map(Vec::as_slice));
    Ok(arguments)
}

/// What a plain parameter holds.
struct Kind {
    /// A `String` somewhere in it.
    has_strings: bool,
}

/// Parameters' types, read with the session's struct types and the call's type arguments.
struct Kinds<'s, 'r, 'l, S: MoveResolver> {
    session: &'s Session<'r, 'l, S>,
    type_arguments: &'s [Type],
}

impl<S: MoveResolver> Kinds<'_, '_, '_, S> {
    /// Whether a value of `parameter` is plain data any (checked) bytes may make; `None` for a
    /// signer or a struct other than `String`, whose values only their module may make.
    fn plain(&self, parameter: &Type, depth: usize) -> Option<Kind> {
        // Type arguments substitute once: they hold no type parameters of their own.
        if depth > 2 * TYPE_DEPTH_MAX {
            return None;
        }
        match parameter {
            Type::Bool | Type::U8 | Type::U64 | Type::U128 | Type::Address => {
                Some(Kind { has_strings: false })
            }
            Type::Vector(inner) | Type::Reference(inner) | Type::MutableReference(inner) => {
                self.plain(inner, depth + 1)
            }
            Type::TyParam(index) => self.plain(self.type_arguments.get(*index)?, depth + 1),
            Type::Struct(index) if self.is_string(*index) => Some(Kind { has_strings: true }),
            Type::Signer | Type::Struct(_) | Type::StructInstantiation(..) => None,
        }
    }

    fn is_string(&self, index: CachedStructIndex) -> bool {
        self.session.get_struct_type(index).is_some_and(|string| {
            *string.module.address() == FRAMEWORK_ADDRESS
                && string.module.name().as_str() == "string"
                && string.name.as_str() == "String"
        })
    }

    /// Whether `argument` is exactly one BCS value of `parameter` (a plain type) whose strings
    /// are all UTF-8.
    fn utf8(&self, parameter: &Type, argument: &[u8]) -> bool {
        let mut reader = BcsReader(argument);
        self.read(parameter, &mut reader).is_some() && reader.0.is_empty()
    }

    /// Reads one value of `parameter`; `None` if the bytes are not one, or hold a string that is
    /// not UTF-8. Linear in the bytes read: every element takes at least one.
    fn read(&self, parameter: &Type, reader: &mut BcsReader<'_>) -> Option<()> {
        match parameter {
            Type::Bool | Type::U8 => reader.take(1).ok().map(drop),
            Type::U64 => reader.take(8).ok().map(drop),
            Type::U128 => reader.take(16).ok().map(drop),
            Type::Address => reader.take(AccountAddress::LENGTH).ok().map(drop),
            Type::Vector(inner) if **inner == Type::U8 => reader.bytes().ok().map(drop),
            Type::Vector(inner) => {
                for _ in 0..reader.length().ok()? {
                    self.read(inner, reader)?;
                }
                Some(())
            }
            Type::Reference(inner) | Type::MutableReference(inner) => self.read(inner, reader),
            Type::TyParam(index) => self.read(self.type_arguments.get(*index)?, reader),
            Type::Struct(_) => std::str::from_utf8(reader.bytes().ok()?).ok().map(drop),
            Type::Signer | Type::StructInstantiation(..) => None,
        }
    }
}

fn is_signer(parameter: &Type) -> bool {
    match parameter {
        Type::Signer => true,
        Type::Reference(inner) => **inner == Type::Signer,
        _ => false,
    }
}
