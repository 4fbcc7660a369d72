//! Spin application manifest (`spin_manifest_version = 2`) parsing and validation.
//!
//! The structures mirror Spin's `spin-manifest` v2 schema closely enough that a manifest this host
//! accepts is accepted by `spin up` too: tables Spin declares with `deny_unknown_fields` deny them
//! here as well, so a typo fails locally instead of only in production. Trigger tables are parsed
//! per trigger type (`http`, `redis`, `cron`); an unknown trigger type is an error because this host
//! cannot run it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The whole `spin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// Must be `2`.
    pub spin_manifest_version: toml::Value,
    /// `[application]`.
    pub application: AppDetails,
    /// `[variables]`: application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// `[[trigger.<type>]]` tables, kept raw until the trigger type is known.
    #[serde(default, rename = "trigger")]
    pub triggers: BTreeMap<String, Vec<toml::Table>>,
    /// `[component.<id>]`.
    #[serde(default, rename = "component")]
    pub components: BTreeMap<String, Component>,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDetails {
    /// Application name.
    pub name: String,
    /// Application version.
    #[serde(default)]
    pub version: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Deployment targets (ignored locally).
    #[serde(default)]
    pub targets: Vec<toml::Value>,
    /// `[application.trigger.<type>]` global trigger settings.
    #[serde(default, rename = "trigger")]
    pub trigger_global_configs: BTreeMap<String, toml::Table>,
    /// `[application.tool.*]`: tool-specific settings (ignored).
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
}

/// One `[variables]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Startup fails when no value is provided.
    #[serde(default)]
    pub required: bool,
    /// Value used when no provider has one.
    #[serde(default)]
    pub default: Option<String>,
    /// Never printed.
    #[serde(default)]
    pub secret: bool,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The Wasm source: a path relative to the manifest (remote sources are not supported locally).
    pub source: ComponentSource,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Component variables: templates over application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Environment variables visible to the guest.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Files mounted read-only into the guest (see `files.rs`).
    #[serde(default)]
    pub files: Vec<toml::Value>,
    /// Patterns excluded from `files` globs.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Legacy HTTP grants (Spin 1.x); rejected because Spin 3 rejects them too.
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    /// Outbound network grants (`scheme://host:port`, templates allowed).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// SQLite database labels the component may open.
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    /// AI models (LLM is not supported by this host; calls return an error).
    #[serde(default)]
    pub ai_models: Vec<String>,
    /// Deployment targets (ignored).
    #[serde(default)]
    pub targets: Option<Vec<toml::Value>>,
    /// `[component.<id>.build]`.
    #[serde(default)]
    pub build: Option<BuildConfig>,
    /// `[component.<id>.tool.*]` (ignored).
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
    /// Component dependencies (composition is not supported: error if non-empty).
    #[serde(default)]
    pub dependencies: BTreeMap<String, toml::Value>,
    /// Dependency configuration inheritance (only meaningful with dependencies).
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    /// Profiles (ignored).
    #[serde(default)]
    pub profile: BTreeMap<String, toml::Table>,
}

/// `source = ...`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ComponentSource {
    /// A local file path.
    Local(String),
    /// `{ url, digest }` or `{ registry, package, version }`.
    Remote(toml::Table),
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// One command or several.
    pub command: Commands,
    /// Working directory, relative to the manifest directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Watch globs (used by `spin watch`; ignored here).
    #[serde(default)]
    pub watch: Vec<String>,
}

/// `command = "..."` or `command = ["...", "..."]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    /// One shell command.
    Single(String),
    /// Several, run in order.
    Multiple(Vec<String>),
}

impl Commands {
    /// The commands in order.
    pub fn iter(&self) -> Vec<&str> {
        match self {
            Commands::Single(c) => vec![c.as_str()],
            Commands::Multiple(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `[[trigger.http]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// Optional trigger id.
    #[serde(default)]
    pub id: Option<String>,
    /// The component id handling the route.
    pub component: Option<String>,
    /// `"/path"`, `"/prefix/..."` or `{ private = true }`.
    pub route: HttpRoute,
    /// `{ type = "http" }` (the default) or `{ type = "wagi" }` (not supported).
    #[serde(default)]
    pub executor: Option<toml::Table>,
    /// Static responses (not supported: error).
    #[serde(default)]
    pub static_response: Option<toml::Table>,
}

/// An HTTP trigger route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum HttpRoute {
    /// A route pattern.
    Route(String),
    /// `{ private = true }`: reachable only through service chaining.
    Private(PrivateRoute),
}

/// `{ private = true }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    /// Must be true.
    pub private: bool,
}

/// `[[trigger.redis]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTrigger {
    /// Optional trigger id.
    #[serde(default)]
    pub id: Option<String>,
    /// The component id handling messages.
    pub component: String,
    /// Channel (template).
    pub channel: String,
    /// Redis address overriding `[application.trigger.redis] address` (template).
    #[serde(default)]
    pub address: Option<String>,
}

/// `[application.trigger.redis]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedisGlobalConfig {
    /// Default Redis address (template).
    #[serde(default)]
    pub address: Option<String>,
}

/// `[[trigger.cron]]` (the `trigger-cron` plugin's format).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronTrigger {
    /// Optional trigger id.
    #[serde(default)]
    pub id: Option<String>,
    /// The component id to call.
    pub component: String,
    /// 6-field (with seconds) or 7-field (with year) cron expression.
    pub cron_expression: String,
}

/// A parsed and validated application: the manifest plus its typed triggers.
#[derive(Debug, Clone)]
pub struct App {
    /// Directory of the manifest; relative paths are resolved against it.
    pub base_dir: PathBuf,
    /// The raw manifest.
    pub manifest: AppManifest,
    /// `[[trigger.http]]` in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[[trigger.redis]]`.
    pub redis_triggers: Vec<RedisTrigger>,
    /// `[[trigger.cron]]`.
    pub cron_triggers: Vec<CronTrigger>,
    /// `[application.trigger.redis]`.
    pub redis_global: RedisGlobalConfig,
}

impl App {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<App> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base_dir = std::path::absolute(&parent)
            .with_context(|| format!("cannot resolve the directory of {}", path.display()))?;
        Self::parse(&text, base_dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and validates manifest text.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<App> {
        let manifest: AppManifest = toml::from_str(text)
            .map_err(|e| toml_error(text, &e))
            .context("the file does not match the Spin manifest v2 schema")?;
        check_version(&manifest)?;
        check_variables(&manifest)?;
        check_components(&manifest)?;
        let (http_triggers, redis_triggers, cron_triggers) = parse_triggers(&manifest)?;
        let redis_global = match manifest.application.trigger_global_configs.get("redis") {
            Some(t) => toml::Value::Table(t.clone())
                .try_into()
                .context("[application.trigger.redis] is invalid")?,
            None => RedisGlobalConfig::default(),
        };
        Ok(App {
            base_dir,
            manifest,
            http_triggers,
            redis_triggers,
            cron_triggers,
            redis_global,
        })
    }

    /// Reads several manifests of one directory and runs them as one application: `spin-host up
    /// --from spin.toml --from spin.receivers.toml` serves in one process what real Spin runs as
    /// two apps (two `spin up`), each with its own triggers. Components, triggers and global
    /// trigger settings must not clash; a variable both declare must be declared alike (one
    /// process reads one `SPIN_VARIABLE_*` environment, as two Spin apps on one host do).
    pub fn load_all(paths: &[PathBuf]) -> Result<App> {
        let mut apps = paths.iter().map(|p| App::load(p));
        let mut app = apps.next().context("no manifest given")??;
        for (next, path) in apps.zip(paths.iter().skip(1)) {
            app = app.merge(next?).with_context(|| {
                format!("cannot run {} beside the first manifest", path.display())
            })?;
        }
        Ok(app)
    }

    /// `other`'s components, triggers, variables and global trigger settings added to `self`'s.
    fn merge(mut self, other: App) -> Result<App> {
        if other.base_dir != self.base_dir {
            bail!(
                "manifests run together must share one directory (relative paths resolve against it): {} is not {}",
                other.base_dir.display(),
                self.base_dir.display()
            );
        }
        let (mine, theirs) = (&mut self.manifest, other.manifest);
        add_all(
            &mut mine.components,
            theirs.components,
            "component",
            |_, _| false,
        )?;
        add_all(&mut mine.variables, theirs.variables, "variable", |a, b| {
            a == b
        })?;
        let globals = &mut mine.application.trigger_global_configs;
        if !globals.contains_key("redis") {
            self.redis_global = other.redis_global;
        }
        add_all(
            globals,
            theirs.application.trigger_global_configs,
            "[application.trigger]",
            |a, b| a == b,
        )?;
        for (kind, tables) in theirs.triggers {
            mine.triggers.entry(kind).or_default().extend(tables);
        }
        self.http_triggers.extend(other.http_triggers);
        self.redis_triggers.extend(other.redis_triggers);
        self.cron_triggers.extend(other.cron_triggers);
        Ok(self)
    }

    /// Ids of every component (sorted).
    pub fn component_ids(&self) -> Vec<String> {
        self.manifest.components.keys().cloned().collect()
    }

    /// Components that some trigger uses.
    pub fn triggered_components(&self) -> HashSet<String> {
        let mut set = HashSet::new();
        for t in &self.http_triggers {
            if let Some(c) = &t.component {
                set.insert(c.clone());
            }
        }
        for t in &self.redis_triggers {
            set.insert(t.component.clone());
        }
        for t in &self.cron_triggers {
            set.insert(t.component.clone());
        }
        set
    }

    /// Absolute (or base-relative) path of a component's Wasm file.
    pub fn component_source_path(&self, id: &str) -> Result<PathBuf> {
        let c = self
            .manifest
            .components
            .get(id)
            .with_context(|| format!("unknown component {id:?}"))?;
        match &c.source {
            ComponentSource::Local(p) => Ok(self.base_dir.join(p)),
            ComponentSource::Remote(_) => {
                bail!("component {id:?}: remote sources are not supported")
            }
        }
    }
}

/// Adds `more` to `into`; a key both hold is an error unless `same` says the two agree.
fn add_all<V>(
    into: &mut BTreeMap<String, V>,
    more: BTreeMap<String, V>,
    what: &str,
    same: impl Fn(&V, &V) -> bool,
) -> Result<()> {
    for (key, value) in more {
        match into.get(&key) {
            Some(have) if !same(have, &value) => {
                bail!("{what} {key:?} is declared by two manifests (only identical declarations may repeat)")
            }
            Some(_) => {}
            None => {
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn check_version(manifest: &AppManifest) -> Result<()> {
    match &manifest.spin_manifest_version {
        toml::Value::Integer(2) => Ok(()),
        toml::Value::String(s) if s == "2" => Ok(()),
        other => bail!(
            "spin_manifest_version must be 2 (this host reads manifest v2 only), found {other}"
        ),
    }
}

fn check_variables(manifest: &AppManifest) -> Result<()> {
    for name in manifest.variables.keys() {
        validate_variable_name(name).with_context(|| format!("invalid variable name {name:?}"))?;
    }
    for (name, var) in &manifest.variables {
        // Spin's loader: `required ^ default.is_some()`.
        if var.required == var.default.is_some() {
            bail!("invalid variable {name:?}: must be `required` OR have a `default`");
        }
    }
    Ok(())
}

fn check_components(manifest: &AppManifest) -> Result<()> {
    for (id, component) in &manifest.components {
        validate_component_id(id)?;
        if let ComponentSource::Remote(_) = component.source {
            bail!("component {id:?}: only local `source` paths are supported by this host");
        }
        if !component.allowed_http_hosts.is_empty() {
            bail!("component {id:?}: `allowed_http_hosts` is not supported in manifest v2; use `allowed_outbound_hosts`");
        }
        if !component.dependencies.is_empty() {
            bail!("component {id:?}: component dependencies (composition) are not supported by this host");
        }
        for name in component.variables.keys() {
            validate_variable_name(name)
                .with_context(|| format!("component {id:?}: invalid variable name {name:?}"))?;
        }
    }
    Ok(())
}

type Triggers = (Vec<HttpTrigger>, Vec<RedisTrigger>, Vec<CronTrigger>);

/// `[[trigger.<type>]]` tables, typed; every trigger names a component of the app.
fn parse_triggers(manifest: &AppManifest) -> Result<Triggers> {
    let (mut http, mut redis, mut cron) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, tables) in &manifest.triggers {
        for (i, table) in tables.iter().enumerate() {
            let value = toml::Value::Table(table.clone());
            let ctx = || format!("[[trigger.{kind}]] #{} is invalid", i + 1);
            match kind.as_str() {
                "http" => http.push(parse_http_trigger(manifest, value, &ctx())?),
                "redis" => {
                    let t: RedisTrigger = value.try_into().with_context(ctx)?;
                    check_component_ref(manifest, &t.component, kind)?;
                    redis.push(t);
                }
                "cron" => {
                    let t: CronTrigger = value.try_into().with_context(ctx)?;
                    check_component_ref(manifest, &t.component, kind)?;
                    cron.push(t);
                }
                other => bail!(
                    "unknown trigger type {other:?}: this host runs only `http`, `redis` and `cron` triggers"
                ),
            }
        }
    }
    Ok((http, redis, cron))
}

/// One `[[trigger.http]]`; `ctx` names it in errors.
fn parse_http_trigger(
    manifest: &AppManifest,
    value: toml::Value,
    ctx: &str,
) -> Result<HttpTrigger> {
    let t: HttpTrigger = value.try_into().with_context(|| ctx.to_string())?;
    if let HttpRoute::Private(p) = &t.route {
        if !p.private {
            bail!("route must be a string pattern or '{{ private = true }}': a trigger for component {:?} has {{ private = false }}", t.component.as_deref().unwrap_or(""));
        }
    }
    if t.static_response.is_some() {
        bail!("{ctx}: `static_response` is not supported by this host");
    }
    if let Some(exec) = &t.executor {
        match exec.get("type").and_then(|v| v.as_str()) {
            Some("http") | None => {}
            Some(other) => {
                bail!("{ctx}: executor type {other:?} is not supported (only \"http\")")
            }
        }
    }
    let Some(component) = &t.component else {
        bail!("{ctx}: `component` is required");
    };
    check_component_ref(manifest, component, "http")?;
    Ok(t)
}

/// A TOML error as one line: `line L, column C: message`.
pub fn toml_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before
                .rfind('\n')
                .map(|i| before.len() - i)
                .unwrap_or(before.len() + 1);
            anyhow::anyhow!("TOML error at line {line}, column {col}: {msg}")
        }
        None => anyhow::anyhow!("TOML error: {msg}"),
    }
}

fn check_component_ref(manifest: &AppManifest, component: &str, kind: &str) -> Result<()> {
    if !manifest.components.contains_key(component) {
        bail!("a [[trigger.{kind}]] refers to component {component:?}, which is not declared as [component.{component}]");
    }
    Ok(())
}

/// Spin's variable names are lower snake case: `[a-z][a-z0-9_]*`, no `__`, no trailing `_`.
pub fn validate_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        bail!("variable names must not be empty");
    };
    if !first.is_ascii_lowercase() {
        bail!("variable names must start with a lowercase ASCII letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("variable names may contain only lowercase letters, digits and underscores");
    }
    if name.contains("__") || name.ends_with('_') {
        bail!("variable names must not contain '__' or end with '_'");
    }
    Ok(())
}

/// Spin's component ids are kebab case: `[a-z][a-z0-9-]*` segments joined by single `-`.
pub fn validate_component_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-');
    if !ok {
        bail!("invalid component id {id:?}: ids are kebab-case (lowercase letters, digits, single '-')");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "x"
[variables]
a = { default = "1" }
b = { required = true, secret = true }
[[trigger.http]]
route = "/hello/..."
component = "hello"
[[trigger.http]]
route = { private = true }
component = "hello"
[[trigger.redis]]
channel = "{{ a }}"
component = "hello"
[[trigger.cron]]
component = "hello"
cron_expression = "*/2 * * * * *"
[component.hello]
source = "hello.wasm"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.hello.variables]
x = "{{ a }}"
[component.hello.build]
command = "true"
workdir = "sub"
watch = ["src/**/*.rs"]
"#;

    #[test]
    fn parses_minimal() {
        let app = App::parse(MINIMAL, PathBuf::from("/base")).expect("parse");
        assert_eq!(app.http_triggers.len(), 2);
        assert_eq!(app.redis_triggers.len(), 1);
        assert_eq!(app.cron_triggers.len(), 1);
        assert_eq!(
            app.component_source_path("hello").expect("path"),
            PathBuf::from("/base/hello.wasm")
        );
    }

    #[test]
    fn unknown_component_field_is_an_error() {
        let text = MINIMAL.replace("allowed_outbound_hosts", "allowed_outbound_hostz");
        let err = App::parse(&text, PathBuf::from(".")).expect_err("must fail");
        assert!(
            format!("{err:#}").contains("allowed_outbound_hostz"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_trigger_type_is_an_error() {
        let text = format!("{MINIMAL}\n[[trigger.sqs]]\ncomponent = \"hello\"\n");
        let err = App::parse(&text, PathBuf::from(".")).expect_err("must fail");
        assert!(
            format!("{err:#}").contains("unknown trigger type"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_trigger_field_is_an_error() {
        let text = MINIMAL.replace("cron_expression", "cron_expr");
        assert!(App::parse(&text, PathBuf::from(".")).is_err());
    }

    #[test]
    fn trigger_for_undeclared_component_is_an_error() {
        let text = MINIMAL.replace("component = \"hello\"\ncron", "component = \"nope\"\ncron");
        let err = App::parse(&text, PathBuf::from(".")).expect_err("must fail");
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn wrong_manifest_version_is_an_error() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(App::parse(&text, PathBuf::from(".")).is_err());
    }

    #[test]
    fn bad_toml_is_an_error() {
        assert!(App::parse("spin_manifest_version = ", PathBuf::from(".")).is_err());
    }

    #[test]
    fn private_false_is_an_error() {
        let text = MINIMAL.replace("{ private = true }", "{ private = false }");
        assert!(App::parse(&text, PathBuf::from(".")).is_err());
    }

    #[test]
    fn variables_need_required_or_default() {
        let text = MINIMAL.replace("a = { default = \"1\" }", "a = { secret = true }");
        assert!(App::parse(&text, PathBuf::from(".")).is_err());
        let text = MINIMAL.replace(
            "a = { default = \"1\" }",
            "a = { default = \"1\", required = true }",
        );
        assert!(App::parse(&text, PathBuf::from(".")).is_err());
    }

    const RECEIVERS: &str = r#"
spin_manifest_version = 2
[application]
name = "y"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[variables]
a = { default = "1" }
[[trigger.redis]]
channel = "bell"
component = "listener"
[component.listener]
source = "hello.wasm"
"#;

    #[test]
    fn two_manifests_of_one_directory_run_as_one_app() {
        let base = || PathBuf::from("/base");
        let one = App::parse(MINIMAL, base()).expect("parse");
        let two = App::parse(RECEIVERS, base()).expect("parse");
        let app = one.merge(two).expect("merge");
        assert_eq!(app.manifest.application.name, "x");
        assert_eq!(app.redis_triggers.len(), 2);
        assert_eq!(app.http_triggers.len(), 2);
        assert_eq!(app.component_ids(), ["hello", "listener"]);
        assert_eq!(
            app.redis_global.address.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(app.manifest.triggers["redis"].len(), 2);
    }

    #[test]
    fn manifests_that_clash_do_not_merge() {
        let app = |text: &str, dir: &str| App::parse(text, PathBuf::from(dir)).expect("parse");
        let clashes = [
            (
                RECEIVERS.replace("listener", "hello"),
                "/base",
                "component \"hello\"",
            ),
            (
                RECEIVERS.replace("a = { default = \"1\" }", "a = { default = \"2\" }"),
                "/base",
                "variable \"a\"",
            ),
            (RECEIVERS.to_owned(), "/elsewhere", "one directory"),
        ];
        for (text, dir, expected) in clashes {
            let err = app(MINIMAL, "/base")
                .merge(app(&text, dir))
                .expect_err("clash");
            assert!(format!("{err:#}").contains(expected), "{err:#}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_variable_name("redis_host").is_ok());
        assert!(validate_variable_name("Redis").is_err());
        assert!(validate_variable_name("a__b").is_err());
        assert!(validate_component_id("payment-callback").is_ok());
        assert!(validate_component_id("Payment").is_err());
        assert!(validate_component_id("a_b").is_err());
    }
}
