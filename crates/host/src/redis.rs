//! Outbound Redis (placeholder: filled in next).
use anyhow::Result;
use crate::state::InstanceState;

/// An open connection.
pub struct RedisConnection;
/// Shared connections.
#[derive(Default)]
pub struct RedisPool;
/// Links the interfaces.
pub fn add_to_linker(_l: &mut wasmtime::component::Linker<InstanceState>) -> Result<()> { Ok(()) }
