//! The Move VM's storage: modules and resources, read through a Block-STM transaction view.
//!
//! Every read goes through the view, so Block-STM records it (absent modules and resources
//! included) and validates it. Modules live under [`StateKey::MoveModule`] and resources under
//! [`StateKey::MoveResource`], keyed by the struct tag's BCS encoding.

use duet_types::{Address, StateKey, StateValue};
use move_core_types::account_address::AccountAddress;
use move_core_types::language_storage::{ModuleId, StructTag};
use move_core_types::resolver::{ModuleResolver, ResourceResolver};

use crate::natives::StateView;
use crate::to_address;

/// The state key of the resource of type `tag` held by `address`.
///
/// # Errors
/// `tag` nests deeper than BCS encodes (500 nested containers: a struct type argument is two,
/// and the VM lets type arguments nest 256 levels deep).
pub fn resource_key(address: Address, tag: &StructTag) -> Result<StateKey, ResolverError> {
    Ok(StateKey::MoveResource { address, struct_tag: struct_tag_bytes(tag)? })
}

/// The BCS encoding of `tag`, as a resource's key holds it.
///
/// # Errors
/// As [`resource_key`].
pub(crate) fn struct_tag_bytes(tag: &StructTag) -> Result<Box<[u8]>, ResolverError> {
    Ok(bcs::to_bytes(tag)
        .map_err(|error| ResolverError(format!("resource type too deep for a state key: {error}")))?
        .into_boxed_slice())
}

/// Why the Move VM's storage could not answer.
#[derive(Debug)]
pub struct ResolverError(pub String);

/// The Move VM's storage over a transaction's view.
pub(crate) struct ViewResolver<'a> {
    view: &'a StateView<'a>,
}

impl<'a> ViewResolver<'a> {
    pub(crate) fn new(view: &'a StateView<'a>) -> Self {
        Self { view }
    }

    /// The view it reads through.
    pub(crate) fn state(&self) -> &'a StateView<'a> {
        self.view
    }

    fn bytes(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ResolverError> {
        match self.view.read(key) {
            Ok(None) => Ok(None),
            Ok(Some(StateValue::Bytes(bytes))) => Ok(Some(bytes.to_vec())),
            Ok(Some(_)) => Err(ResolverError(format!("{key:?} holds a value of the wrong kind"))),
            Err(error) => Err(ResolverError(error.to_string())),
        }
    }
}

impl ModuleResolver for ViewResolver<'_> {
    type Error = ResolverError;

    fn get_module(&self, id: &ModuleId) -> Result<Option<Vec<u8>>, ResolverError> {
        let key = StateKey::MoveModule {
            address: to_address(*id.address()),
            name: id.name().as_str().into(),
        };
        self.bytes(&key)
    }
}

impl ResourceResolver for ViewResolver<'_> {
    type Error = ResolverError;

    fn get_resource(
        &self,
        address: &AccountAddress,
        tag: &StructTag,
    ) -> Result<Option<Vec<u8>>, ResolverError> {
        self.bytes(&resource_key(to_address(*address), tag)?)
    }
}
