//! Interfaces without a backend here (placeholder: filled in next).
use anyhow::Result;
use crate::state::InstanceState;

/// Never constructed.
pub struct Unsupported;
/// Links the interfaces.
pub fn add_to_linker(_l: &mut wasmtime::component::Linker<InstanceState>) -> Result<()> { Ok(()) }
