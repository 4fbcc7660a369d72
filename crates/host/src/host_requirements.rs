//! Spin's host requirements: a component granted a `*.spin.internal` host requires
//! `local_service_chaining` (Spin's `requires_service_chaining`), and only the HTTP trigger
//! supports it. As in Spin's `ensure_needs_only`, every trigger type checks the components its
//! own triggers run, and one that runs such a component refuses to start with Spin's message.
//! Spin's message names only the trigger type and the feature; this host adds the components and
//! grants that require it.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::manifest::App;
use crate::outbound_networking::service_chaining_grants;
use crate::state::TriggerKind;
use crate::variables::AppVariables;

/// Spin's name for the service-chaining host requirement.
pub const LOCAL_SERVICE_CHAINING: &str = "local_service_chaining";

/// Fails if a trigger type other than HTTP runs a component that requires service chaining.
pub fn check(app: &App, vars: &AppVariables) -> Result<()> {
    let by_type = [
        (
            TriggerKind::Redis,
            app.redis_triggers
                .iter()
                .map(|t| t.component.as_str())
                .collect(),
        ),
        (
            TriggerKind::Cron,
            app.cron_triggers
                .iter()
                .map(|t| t.component.as_str())
                .collect(),
        ),
    ];
    let errors: Vec<String> = by_type
        .into_iter()
        .filter_map(|(kind, components): (TriggerKind, Vec<&str>)| {
            unmet(app, vars, kind, &components)
        })
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// The error for one trigger type, if any of `components` requires service chaining.
fn unmet(app: &App, vars: &AppVariables, kind: TriggerKind, components: &[&str]) -> Option<String> {
    let needing: BTreeMap<&str, Vec<String>> = components
        .iter()
        .filter_map(|id| {
            let c = app.manifest.components.get(*id)?;
            let grants = service_chaining_grants(&c.allowed_outbound_hosts, vars);
            (!grants.is_empty()).then_some((*id, grants))
        })
        .collect();
    if needing.is_empty() {
        return None;
    }
    let who: Vec<String> = needing
        .iter()
        .map(|(id, grants)| format!("component {id:?} (allowed_outbound_hosts {grants:?})"))
        .collect();
    Some(format!(
        "This application requires the following features that are not available in this version of the '{}' trigger: {LOCAL_SERVICE_CHAINING} (required by {})",
        kind.name(),
        who.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "x"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[variables]
target = { default = "http://b.spin.internal" }
[[trigger.http]]
route = "/..."
component = "a"
[[trigger.redis]]
channel = "c"
component = "r"
[[trigger.cron]]
component = "t"
cron_expression = "* * * * * *"
[component.a]
source = "a.wasm"
allowed_outbound_hosts = ["http://*.spin.internal"]
[component.b]
source = "b.wasm"
[component.r]
source = "r.wasm"
allowed_outbound_hosts = ["*://*:*"]
[component.t]
source = "t.wasm"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
"#;

    fn check_app(text: &str) -> Result<()> {
        let app = App::parse(text, PathBuf::from(".")).expect("parse");
        let vars = AppVariables::resolve(&app, &|_| None).expect("vars");
        check(&app, &vars)
    }

    #[test]
    fn http_may_chain_and_a_wildcard_grant_is_not_chaining() {
        check_app(APP).expect("only the HTTP component is granted spin.internal");
    }

    #[test]
    fn a_cron_component_granted_a_chaining_host_is_refused() {
        let text = APP.replace(
            r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379"]"#,
            r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379", "{{ target }}"]"#,
        );
        let err = format!("{:#}", check_app(&text).expect_err("cron cannot chain"));
        assert!(
            err.starts_with("This application requires the following features that are not available in this version of the 'cron' trigger: local_service_chaining"),
            "{err}"
        );
        assert!(err.contains("component \"t\""), "{err}");
        assert!(!err.contains("'redis'"), "{err}");
    }

    #[test]
    fn every_failing_trigger_type_is_reported() {
        let text = APP
            .replace(r#"["*://*:*"]"#, r#"["http://*.spin.internal"]"#)
            .replace(
                r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379"]"#,
                r#"allowed_outbound_hosts = ["http://a.spin.internal"]"#,
            );
        let err = format!("{:#}", check_app(&text).expect_err("both refuse"));
        assert!(
            err.contains("'redis' trigger: local_service_chaining (required by component \"r\""),
            "{err}"
        );
        assert!(
            err.contains("'cron' trigger: local_service_chaining (required by component \"t\""),
            "{err}"
        );
    }
}
