//! Runtime config (placeholder: filled in next).
use anyhow::Result;
use std::path::Path;

/// Parsed runtime config.
#[derive(Debug, Default, Clone)]
pub struct RuntimeConfig;
impl RuntimeConfig {
    /// Reads a runtime config file.
    pub fn load(_p: Option<&Path>) -> Result<Self> { Ok(RuntimeConfig) }
    /// Whether a KV label exists.
    pub fn has_kv_store(&self, label: &str) -> bool { label == "default" }
    /// Whether a SQLite label exists.
    pub fn has_sqlite_database(&self, label: &str) -> bool { label == "default" }
}
