//! SQLite (placeholder: filled in next).
use std::path::Path;
use anyhow::Result;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;

/// An open connection.
pub struct SqliteConnection;
/// Shared databases.
pub struct SqliteService;
impl SqliteService {
    /// Opens the configured databases.
    pub fn new(_state_dir: &Path, _rc: &RuntimeConfig) -> Result<Self> { Ok(SqliteService) }
}
/// Links the interfaces.
pub fn add_to_linker(_l: &mut wasmtime::component::Linker<InstanceState>) -> Result<()> { Ok(()) }
