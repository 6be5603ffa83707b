// Copyright (c) The Diem Core Contributors
// Copyright (c) The Move Contributors
// SPDX-License-Identifier: Apache-2.0

//! This module implements the checker for verifying correctness of function bodies.
//! The overall verification is split between stack_usage_verifier.rs and
//! abstract_interpreter.rs. CodeUnitVerifier simply orchestrates calls into these two files.
use crate::{
    acquires_list_verifier::AcquiresVerifier, control_flow, locals_safety, reference_safety,
    stack_usage_verifier::StackUsageVerifier, type_safety, verifier::VerifierConfig,
};
use move_binary_format::{
    access::ModuleAccess,
    binary_views::{BinaryIndexedView, FunctionView},
    errors::{Location, PartialVMError, PartialVMResult, VMResult},
    file_format::{
        Bytecode, CompiledModule, CompiledScript, FunctionDefinition, FunctionDefinitionIndex,
        FunctionHandleIndex, IdentifierIndex, TableIndex,
    },
    IndexKind,
};
use move_core_types::vm_status::StatusCode;
use std::collections::HashMap;

/// Duet: the most parameters and locals of one function, together (the reference analysis
/// counts them in a `u8`).
pub const MAX_LOCALS: usize = u8::MAX as usize;
/// Duet: the most elements one `VecPack` or `VecUnpack` takes (the VM's operand stack holds no
/// more).
pub const MAX_VECTOR_PACK: u64 = 1_024;

pub struct CodeUnitVerifier<'a, 'b> {
    resolver: BinaryIndexedView<'a>,
    function_view: FunctionView<'a>,
    // Duet: the module's map, built once for all its functions (see `verify_module_impl`).
    name_def_map: &'b HashMap<IdentifierIndex, FunctionDefinitionIndex>,
}

impl<'a, 'b> CodeUnitVerifier<'a, 'b> {
    pub fn verify_module(
        verifier_config: &VerifierConfig,
        module: &'a CompiledModule,
    ) -> VMResult<()> {
        Self::verify_module_impl(verifier_config, module)
            .map_err(|e| e.finish(Location::Module(module.self_id())))
    }

    fn verify_module_impl(
        verifier_config: &VerifierConfig,
        module: &'a CompiledModule,
    ) -> PartialVMResult<()> {
        // Duet: the map from function names to definitions, built once for the module: it was
        // built again for every function, so a module of N functions cost N^2 insertions (a
        // module of 10 000 tiny functions, seconds at every publication and every cold load).
        let mut name_def_map = HashMap::new();
        for (idx, func_def) in module.function_defs().iter().enumerate() {
            let fh = module.function_handle_at(func_def.function);
            name_def_map.insert(fh.name, FunctionDefinitionIndex(idx as u16));
        }
        let handle_to_def = crate::acquires_list_verifier::handle_to_def(module);
        for (idx, function_definition) in module.function_defs().iter().enumerate() {
            let index = FunctionDefinitionIndex(idx as TableIndex);
            Self::verify_function(
                verifier_config,
                index,
                function_definition,
                module,
                &name_def_map,
                &handle_to_def,
            )
            .map_err(|err| err.at_index(IndexKind::FunctionDefinition, index.0))?
        }
        Ok(())
    }

    pub fn verify_script(
        verifier_config: &VerifierConfig,
        module: &'a CompiledScript,
    ) -> VMResult<()> {
        Self::verify_script_impl(verifier_config, module).map_err(|e| e.finish(Location::Script))
    }

    fn verify_script_impl(
        verifier_config: &VerifierConfig,
        script: &'a CompiledScript,
    ) -> PartialVMResult<()> {
        // create `FunctionView` and `BinaryIndexedView`
        control_flow::verify(verifier_config, None, &script.code)?;
        let function_view = FunctionView::script(script);
        let resolver = BinaryIndexedView::Script(script);
        //verify
        let name_def_map = HashMap::new();
        let code_unit_verifier = CodeUnitVerifier {
            resolver,
            function_view,
            name_def_map: &name_def_map,
        };
        code_unit_verifier.verify_common()
    }

    fn verify_function(
        verifier_config: &VerifierConfig,
        index: FunctionDefinitionIndex,
        function_definition: &'a FunctionDefinition,
        module: &'a CompiledModule,
        name_def_map: &HashMap<IdentifierIndex, FunctionDefinitionIndex>,
        handle_to_def: &HashMap<FunctionHandleIndex, &'a FunctionDefinition>,
    ) -> PartialVMResult<()> {
        // nothing to verify for native function
        let code = match &function_definition.code {
            Some(code) => code,
            None => return Ok(()),
        };
        // create `FunctionView` and `BinaryIndexedView`
        let function_handle = module.function_handle_at(function_definition.function);
        // Duet: what upstream Move refuses since, refused here for stored modules too (Duet's
        // module limits refuse it at publication, with a message): more than 255 parameters
        // and locals (the reference analysis counts them in a `u8`, and with 256 checked none),
        // and a vector instruction of more than 1 024 elements (the VM's operand stack holds no
        // more; the passes below loop once per element of the `u64` count).
        let locals = module.signature_at(function_handle.parameters).len()
            + module.signature_at(code.locals).len();
        if locals > MAX_LOCALS {
            return Err(PartialVMError::new(StatusCode::TOO_MANY_LOCALS));
        }
        let too_many = |count: u64| count > MAX_VECTOR_PACK;
        if code.code.iter().any(|instruction| {
            matches!(instruction, Bytecode::VecPack(_, count) | Bytecode::VecUnpack(_, count)
                if too_many(*count))
        }) {
            return Err(PartialVMError::new(StatusCode::CONSTRAINT_NOT_SATISFIED));
        }
        control_flow::verify(verifier_config, Some(index), code)?;
        let function_view = FunctionView::function(module, index, code, function_handle);
        let resolver = BinaryIndexedView::Module(module);
        // verify
        let code_unit_verifier = CodeUnitVerifier {
            resolver,
            function_view,
            name_def_map,
        };
        code_unit_verifier.verify_common()?;
        AcquiresVerifier::verify(module, index, function_definition, handle_to_def)
    }

    fn verify_common(&self) -> PartialVMResult<()> {
        StackUsageVerifier::verify(&self.resolver, &self.function_view)?;
        type_safety::verify(&self.resolver, &self.function_view)?;
        locals_safety::verify(&self.resolver, &self.function_view)?;
        reference_safety::verify(&self.resolver, &self.function_view, &self.name_def_map)
    }
}
