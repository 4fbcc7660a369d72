//! Variables: `[variables]`, `{{ name }}` templates, and the `fermyon:spin/variables@2.0.0` and
//! `wasi:config/store@0.2.0-draft-2024-09-27` interfaces (Spin's `factor-variables`).
//!
//! Application variables get their values, in order, from the environment provider
//! (`SPIN_VARIABLE_<UPPER_NAME>`, then a `.env` file in the working directory, like Spin's env
//! provider) and from their `default`. A `required` variable with no value fails start-up.
//! Component variables (`[component.X.variables]`) are templates over application variables; a
//! component sees only its own. Values are resolved once at start-up (the providers here are
//! static), so a guest's `get` is a map lookup.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::bindings::fermyon::spin2_0_0::variables as v2;
use crate::bindings::wasi::config::store as wasi_config;
use crate::capability::ConfigureAppContext;
use crate::manifest::{validate_variable_name, App};
use crate::state::InstanceState;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// `{{ name }}`.
    Var(String),
}

/// A parsed `{{ name }}` template (Spin's `spin-expressions` syntax: no escapes, no nesting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; `{{` without a matching `}}` and invalid names are errors.
    pub fn parse(s: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("invalid template {s:?}: unterminated '{{{{'");
            };
            let name = after[..end].trim();
            validate_variable_name(name)
                .with_context(|| format!("invalid template {s:?}: bad variable name {name:?}"))?;
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True if the template has no `{{ }}`.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Names referenced.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with a lookup; the lookup's error aborts.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(&lookup(v)?),
            }
        }
        Ok(out)
    }
}

/// Application variable values, resolved at start-up.
#[derive(Debug, Clone, Default)]
pub struct AppVariables {
    /// name => value (None: no provider and no default).
    values: BTreeMap<String, Option<String>>,
}

impl AppVariables {
    /// Resolves every `[variables]` entry from `env` (a `SPIN_VARIABLE_*` lookup) and defaults.
    pub fn resolve(app: &App, env: &dyn Fn(&str) -> Option<String>) -> Result<AppVariables> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, var) in &app.manifest.variables {
            let env_key = env_key(name);
            let value = env(&env_key).or_else(|| var.default.clone());
            if value.is_none() && var.required {
                missing.push(format!("{name:?} (set {env_key})"));
            }
            values.insert(name.clone(), value);
        }
        if !missing.is_empty() {
            bail!(
                "required variable(s) have no value: {}. Spin reads variables from SPIN_VARIABLE_<NAME> environment variables",
                missing.join(", ")
            );
        }
        Ok(AppVariables { values })
    }

    /// Builds directly from values (tests).
    pub fn from_values(values: BTreeMap<String, Option<String>>) -> Self {
        AppVariables { values }
    }

    /// The value of an application variable (Spin's errors if unknown or unresolvable).
    pub fn get(&self, name: &str) -> Result<String> {
        match self.values.get(name) {
            None => bail!("unknown variable {name:?}"),
            Some(None) => bail!("no provider resolved required variable {name:?}"),
            Some(Some(v)) => Ok(v.clone()),
        }
    }

    /// Resolves a template string against application variables.
    pub fn resolve_template(&self, template: &str) -> Result<String> {
        Template::parse(template)?.render(|v| self.get(v))
    }

    /// Checks that a template only references declared variables (Spin validates this at load).
    pub fn check_template(&self, template: &str) -> Result<()> {
        let t = Template::parse(template)?;
        for v in t.vars() {
            if !self.values.contains_key(v) {
                bail!("template {template:?} refers to unknown variable {v:?}; declare it in [variables]");
            }
        }
        Ok(())
    }
}

/// `SPIN_VARIABLE_<UPPER_NAME>`.
pub fn env_key(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// The environment provider: process environment, then `.env` in the working directory.
pub fn env_provider() -> impl Fn(&str) -> Option<String> {
    let dotenv = load_dotenv(Path::new(".env"));
    move |key| std::env::var(key).ok().or_else(|| dotenv.get(key).cloned())
}

fn load_dotenv(path: &Path) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return map;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            map.insert(k.trim().to_string(), v.to_string());
        }
    }
    map
}

/// Resolves every loaded component's `[component.<id>.variables]` (every bad reference of every
/// component is reported at once).
pub fn configure_app(
    ctx: &ConfigureAppContext<'_>,
) -> Result<HashMap<String, SharedComponentVariables>> {
    ctx.per_component(|id, _| ComponentVariables::resolve(ctx.app, id, ctx.vars).map(Arc::new))
}

/// A component's resolved variables: name => value or the error a guest gets.
#[derive(Debug, Default)]
pub struct ComponentVariables {
    /// Component id (for error messages).
    pub component_id: String,
    values: BTreeMap<String, std::result::Result<String, String>>,
}

impl ComponentVariables {
    /// Resolves `[component.<id>.variables]` against application variables. Unknown variable
    /// references fail start-up; unresolvable ones become a per-get `provider` error, as in Spin.
    pub fn resolve(app: &App, id: &str, vars: &AppVariables) -> Result<ComponentVariables> {
        let component = app
            .manifest
            .components
            .get(id)
            .with_context(|| format!("unknown component {id:?}"))?;
        let mut values = BTreeMap::new();
        for (name, template) in &component.variables {
            vars.check_template(template)
                .with_context(|| format!("component {id:?} variable {name:?}"))?;
            let value = vars
                .resolve_template(template)
                .map_err(|e| format!("{e:#}"));
            values.insert(name.clone(), value);
        }
        Ok(ComponentVariables {
            component_id: id.to_string(),
            values,
        })
    }

    /// The guest-visible `get`, with Spin's error variants.
    pub fn get(&self, key: &str) -> std::result::Result<String, v2::Error> {
        if let Err(e) = validate_variable_name(key) {
            return Err(v2::Error::InvalidName(format!("{key:?}: {e}")));
        }
        match self.values.get(key) {
            None => Err(v2::Error::Undefined(format!(
                "no variable for {:?}.{key:?}",
                self.component_id
            ))),
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(v2::Error::Provider(e.clone())),
        }
    }

    /// Every resolvable variable (for `wasi:config/store.get-all`).
    pub fn all(&self) -> std::result::Result<Vec<(String, String)>, wasi_config::Error> {
        let mut out = Vec::with_capacity(self.values.len());
        for (k, v) in &self.values {
            match v {
                Ok(v) => out.push((k.clone(), v.clone())),
                Err(e) => return Err(wasi_config::Error::Upstream(e.clone())),
            }
        }
        Ok(out)
    }
}

/// Adds both variables interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<InstanceState>) -> Result<()> {
    type D = wasmtime::component::HasSelf<InstanceState>;
    v2::add_to_linker::<_, D>(linker, |s| s)?;
    wasi_config::add_to_linker::<_, D>(linker, |s| s)?;
    Ok(())
}

impl v2::Host for InstanceState {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<std::result::Result<String, v2::Error>> {
        Ok(self.variables.get(&name))
    }
}

impl wasi_config::Host for InstanceState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<std::result::Result<Option<String>, wasi_config::Error>> {
        Ok(match self.variables.get(&key) {
            Ok(v) => Ok(Some(v)),
            Err(v2::Error::Undefined(_)) | Err(v2::Error::InvalidName(_)) => Ok(None),
            Err(v2::Error::Provider(m)) => Err(wasi_config::Error::Upstream(m)),
            Err(v2::Error::Other(m)) => Err(wasi_config::Error::Io(m)),
        })
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<std::result::Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(self.variables.all())
    }
}

/// Shared handle.
pub type SharedComponentVariables = Arc<ComponentVariables>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn template_parsing() {
        let t = Template::parse("redis://{{ redis_host }}/x{{a}}").expect("parse");
        assert_eq!(
            t.parts,
            vec![
                Part::Lit("redis://".into()),
                Part::Var("redis_host".into()),
                Part::Lit("/x".into()),
                Part::Var("a".into())
            ]
        );
        assert!(!t.is_literal());
        assert!(Template::parse("plain").expect("parse").is_literal());
        assert!(Template::parse("{{ unterminated").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
    }

    fn app() -> App {
        App::parse(
            r#"
spin_manifest_version = 2
[application]
name = "x"
[variables]
host = { default = "h:1" }
secret = { required = true, secret = true }
[component.c]
source = "c.wasm"
[component.c.variables]
url = "redis://{{ host }}"
s = "{{ secret }}"
"#,
            PathBuf::from("."),
        )
        .expect("parse")
    }

    #[test]
    fn required_without_value_fails() {
        let err = AppVariables::resolve(&app(), &|_| None).expect_err("must fail");
        assert!(
            format!("{err:#}").contains("SPIN_VARIABLE_SECRET"),
            "{err:#}"
        );
    }

    #[test]
    fn env_overrides_default_and_component_sees_own_only() {
        let env = |k: &str| match k {
            "SPIN_VARIABLE_HOST" => Some("other:2".to_string()),
            "SPIN_VARIABLE_SECRET" => Some("s3".to_string()),
            _ => None,
        };
        let app = app();
        let vars = AppVariables::resolve(&app, &env).expect("resolve");
        let cv = ComponentVariables::resolve(&app, "c", &vars).expect("component");
        assert_eq!(cv.get("url").expect("url"), "redis://other:2");
        assert_eq!(cv.get("s").expect("s"), "s3");
        assert!(matches!(cv.get("host"), Err(v2::Error::Undefined(_))));
        assert!(matches!(cv.get("Bad-Name"), Err(v2::Error::InvalidName(_))));
    }

    #[test]
    fn unknown_template_var_fails() {
        let vars = AppVariables::from_values(BTreeMap::new());
        assert!(vars.check_template("{{ nope }}").is_err());
    }
}
