//! Interfaces spin-sdk 5.2 may import but this host has no backend for: LLM
//! (`fermyon:spin/llm@2.0.0`), MQTT, MySQL and PostgreSQL (`fermyon:spin/{mqtt,mysql,postgres}@2.0.0`,
//! `spin:postgres/postgres@{3,4}.0.0`).
//!
//! They are linked so that every spin-sdk component instantiates (a missing import fails at
//! instantiation, for every request, not only when the feature is used). Calls return the
//! interface's own error value, never a trap: `open` checks `allowed_outbound_hosts` first (the
//! not-granted error Spin gives: for MQTT `connection-failed("address <addr> is not permitted")`,
//! as Spin's outbound-mqtt factor) and otherwise reports that the backend is not supported here.

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin2_0_0::{llm, mqtt, mysql, postgres as pg2, rdbms_types};
use crate::bindings::spin::postgres3_0_0::postgres as pg3;
use crate::bindings::spin::postgres4_0_0::postgres as pg4;
use crate::state::InstanceState;

/// Never constructed: every `open` fails.
pub struct Unsupported;

const NOT_SUPPORTED: &str = "not supported by spin-host (this local host has no backend for it)";

/// Links every unsupported interface.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    type D = HasSelf<InstanceState>;
    llm::add_to_linker::<_, D>(linker, |s| s)?;
    mqtt::add_to_linker::<_, D>(linker, |s| s)?;
    rdbms_types::add_to_linker::<_, D>(linker, |s| s)?;
    mysql::add_to_linker::<_, D>(linker, |s| s)?;
    pg2::add_to_linker::<_, D>(linker, |s| s)?;
    pg3::add_to_linker::<_, D>(linker, |s| s)?;
    pg4::add_to_linker::<_, D>(linker, |s| s)?;
    Ok(())
}

fn denied(state: &InstanceState, address: &str, scheme: &str) -> Option<String> {
    if state.allowed_hosts.allows_url(address, scheme) {
        None
    } else {
        Some(format!(
            "address {address} is not permitted: add it to the component's allowed_outbound_hosts"
        ))
    }
}

impl llm::Host for InstanceState {
    async fn infer(
        &mut self,
        _model: String,
        _prompt: String,
        _params: Option<llm::InferencingParams>,
    ) -> wasmtime::Result<std::result::Result<llm::InferencingResult, llm::Error>> {
        Ok(Err(llm::Error::ModelNotSupported))
    }

    async fn generate_embeddings(
        &mut self,
        _model: String,
        _text: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<llm::EmbeddingsResult, llm::Error>> {
        Ok(Err(llm::Error::ModelNotSupported))
    }
}

impl mqtt::Host for InstanceState {}

impl mqtt::HostConnection for InstanceState {
    async fn open(
        &mut self,
        address: String,
        _username: String,
        _password: String,
        _keep_alive: u64,
    ) -> wasmtime::Result<std::result::Result<Resource<Unsupported>, mqtt::Error>> {
        // Spin's outbound-mqtt factor words it exactly so.
        if !self.allowed_hosts.allows_url(&address, "mqtt") {
            return Ok(Err(mqtt::Error::ConnectionFailed(format!(
                "address {address} is not permitted"
            ))));
        }
        Ok(Err(mqtt::Error::ConnectionFailed(format!(
            "MQTT is {NOT_SUPPORTED}"
        ))))
    }

    async fn publish(
        &mut self,
        _c: Resource<Unsupported>,
        _topic: String,
        _payload: Vec<u8>,
        _qos: mqtt::Qos,
    ) -> wasmtime::Result<std::result::Result<(), mqtt::Error>> {
        Ok(Err(mqtt::Error::Other(format!("MQTT is {NOT_SUPPORTED}"))))
    }

    async fn drop(&mut self, c: Resource<Unsupported>) -> wasmtime::Result<()> {
        let _ = self.table.delete(c);
        Ok(())
    }
}

impl rdbms_types::Host for InstanceState {}

/// Implements `Host` and `HostConnection` for one relational-database interface (MySQL and the
/// three PostgreSQL versions). The four interfaces differ only in their type paths, the scheme
/// checked against `allowed_outbound_hosts`, the product name and `execute`'s success type, so one
/// body keeps their error values identical instead of four hand-kept copies.
macro_rules! unsupported_rdbms {
    ($iface:ident, $types:ident, $scheme:literal, $name:literal, $exec_ok:ty) => {
        impl $iface::Host for InstanceState {}

        impl $iface::HostConnection for InstanceState {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<std::result::Result<Resource<Unsupported>, $types::Error>> {
                if let Some(m) = denied(self, &address, $scheme) {
                    return Ok(Err($types::Error::ConnectionFailed(m)));
                }
                Ok(Err($types::Error::ConnectionFailed(format!(
                    "{} is {NOT_SUPPORTED}",
                    $name
                ))))
            }

            async fn query(
                &mut self,
                _c: Resource<Unsupported>,
                _statement: String,
                _params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<std::result::Result<$types::RowSet, $types::Error>> {
                Ok(Err($types::Error::Other(format!(
                    "{} is {NOT_SUPPORTED}",
                    $name
                ))))
            }

            async fn execute(
                &mut self,
                _c: Resource<Unsupported>,
                _statement: String,
                _params: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<std::result::Result<$exec_ok, $types::Error>> {
                Ok(Err($types::Error::Other(format!(
                    "{} is {NOT_SUPPORTED}",
                    $name
                ))))
            }

            async fn drop(&mut self, c: Resource<Unsupported>) -> wasmtime::Result<()> {
                let _ = self.table.delete(c);
                Ok(())
            }
        }
    };
}

unsupported_rdbms!(mysql, rdbms_types, "mysql", "MySQL", ());
unsupported_rdbms!(pg2, rdbms_types, "postgres", "PostgreSQL", u64);
unsupported_rdbms!(pg3, pg3, "postgres", "PostgreSQL", u64);
unsupported_rdbms!(pg4, pg4, "postgres", "PostgreSQL", u64);
