//! Key-value stores (placeholder: filled in next).
use std::path::Path;
use anyhow::Result;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;

/// An open store.
pub struct KvStore;
/// A CAS handle.
pub struct KvCas;
/// Shared stores.
pub struct KvService;
impl KvService {
    /// Opens the configured stores.
    pub fn new(_state_dir: &Path, _rc: &RuntimeConfig) -> Result<Self> { Ok(KvService) }
}
/// Links the interfaces.
pub fn add_to_linker(_l: &mut wasmtime::component::Linker<InstanceState>) -> Result<()> { Ok(()) }
