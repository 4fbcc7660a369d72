//! The runtime config file (`--runtime-config-file`), in Spin's format:
//!
//! ```toml
//! [key_value_store.cache]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [key_value_store.local]
//! type = "spin"
//! path = "data/local.db"   # relative to the runtime config file; no path = in memory
//!
//! [sqlite_database.reports]
//! type = "spin"
//! path = "data/reports.db" # relative to the working directory, as in Spin; no path = in memory
//! group_commit = true           # host-only, default true (crates/host/src/sqlite/group_commit.rs)
//! write_turn_deadline_ms = 3000 # host-only, default 3000: a group member holding the write
//!                               # turn longer while others wait for it is aborted
//! ```
//!
//! `group_commit` and `write_turn_deadline_ms` exist only in this host: real Spin rejects a
//! `[sqlite_database.<label>]` table that carries them, so they belong in a runtime config file
//! given to `spin-host` only. Without them every database has the defaults.
//!
//! The `default` key-value store and SQLite database exist unless overridden: files under the
//! state directory (`sqlite_key_value.db`, `sqlite_db.db`), as `spin up` lays them out. Unknown
//! top-level keys are errors (Spin rejects unused runtime config keys); sections this host has no
//! backend for (LLM, variable providers, TLS, ...) are accepted and ignored with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A key-value store backend.
#[derive(Debug, Clone, PartialEq)]
pub enum KvStoreConfig {
    /// SQLite file (None: in memory).
    Spin {
        /// Database file.
        path: Option<PathBuf>,
    },
    /// A Redis server.
    Redis {
        /// `redis://...`.
        url: String,
    },
}

/// A SQLite database.
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteConfig {
    /// Database file (None: in memory, a fresh database per connection as in Spin).
    pub path: Option<PathBuf>,
    /// How this host commits the database's write transactions (host-only keys).
    pub commit: SqliteCommitConfig,
}

/// How `spin-host` commits a database's write transactions: `group_commit` and
/// `write_turn_deadline_ms` in `[sqlite_database.<label>]`, keys only this host knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SqliteCommitConfig {
    /// Write transactions of this process share commits (`crates/host/src/sqlite/group_commit.rs`).
    pub group_commit: bool,
    /// How long a member of a commit group may hold the write turn before it is aborted.
    pub write_turn_deadline: Duration,
}

impl Default for SqliteCommitConfig {
    fn default() -> Self {
        SqliteCommitConfig {
            group_commit: true,
            write_turn_deadline: Duration::from_millis(DEFAULT_WRITE_TURN_DEADLINE_MS),
        }
    }
}

/// A member holding the write turn longer than this is aborted. Shorter than the 5 s a writer
/// waits for its turn (as SQLite's busy timeout under Spin), so one stuck transaction fails
/// alone instead of every writer queued behind it.
const DEFAULT_WRITE_TURN_DEADLINE_MS: u64 = 3000;

/// The parsed runtime config.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Explicit key-value stores.
    pub key_value_stores: BTreeMap<String, KvStoreConfig>,
    /// Explicit SQLite databases.
    pub sqlite_databases: BTreeMap<String, SqliteConfig>,
    /// `state_dir = "..."`, if set.
    pub state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Typed {
    #[serde(rename = "type")]
    type_: String,
    #[serde(flatten)]
    rest: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinKv {
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisKv {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinSqlite {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    allow_attach_file: bool,
    /// Host-only.
    #[serde(default)]
    group_commit: Option<bool>,
    /// Host-only.
    #[serde(default)]
    write_turn_deadline_ms: Option<u64>,
}

impl SpinSqlite {
    fn commit(&self, label: &str) -> Result<SqliteCommitConfig> {
        let defaults = SqliteCommitConfig::default();
        let deadline = match self.write_turn_deadline_ms {
            Some(0) => bail!("[sqlite_database.{label}] write_turn_deadline_ms must be at least 1"),
            Some(ms) => Duration::from_millis(ms),
            None => defaults.write_turn_deadline,
        };
        Ok(SqliteCommitConfig {
            group_commit: self.group_commit.unwrap_or(defaults.group_commit),
            write_turn_deadline: deadline,
        })
    }
}

const IGNORED_KEYS: &[&str] = &[
    "variables_provider",
    "config_provider",
    "llm_compute",
    "outbound_networking",
    "client_tls",
    "otel",
    "log_dir",
    "max_instance_memory",
];

impl RuntimeConfig {
    /// Reads a runtime config file (None: defaults only).
    pub fn load(path: Option<&Path>) -> Result<RuntimeConfig> {
        let Some(path) = path else {
            return Ok(RuntimeConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the runtime config file {}", path.display()))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        Self::parse(&text, &dir, &cwd)
            .with_context(|| format!("invalid runtime config file {}", path.display()))
    }

    /// Parses runtime config text; `dir` is the file's directory, `cwd` the working directory.
    pub fn parse(text: &str, dir: &Path, cwd: &Path) -> Result<RuntimeConfig> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| crate::manifest::toml_error(text, &e))?;
        let mut rc = RuntimeConfig::default();
        for (key, value) in table {
            match key.as_str() {
                "key_value_store" => {
                    let stores: BTreeMap<String, Typed> = value
                        .try_into()
                        .context("[key_value_store.<label>] tables need a `type`")?;
                    for (label, t) in stores {
                        let cfg = match t.type_.as_str() {
                            "spin" => {
                                let c: SpinKv = toml::Value::Table(t.rest)
                                    .try_into()
                                    .with_context(|| format!("[key_value_store.{label}]"))?;
                                KvStoreConfig::Spin {
                                    path: c.path.map(|p| resolve(&p, dir)),
                                }
                            }
                            "redis" => {
                                let c: RedisKv = toml::Value::Table(t.rest)
                                    .try_into()
                                    .with_context(|| format!("[key_value_store.{label}]"))?;
                                KvStoreConfig::Redis { url: c.url }
                            }
                            other => bail!(
                                "[key_value_store.{label}]: store type {other:?} is not supported by this host (\"spin\" or \"redis\")"
                            ),
                        };
                        rc.key_value_stores.insert(label, cfg);
                    }
                }
                "sqlite_database" => {
                    let dbs: BTreeMap<String, Typed> = value
                        .try_into()
                        .context("[sqlite_database.<label>] tables need a `type`")?;
                    for (label, t) in dbs {
                        match t.type_.as_str() {
                            "spin" => {
                                let c: SpinSqlite = toml::Value::Table(t.rest)
                                    .try_into()
                                    .with_context(|| format!("[sqlite_database.{label}]"))?;
                                if c.allow_attach_file {
                                    eprintln!("spin-host: warning: [sqlite_database.{label}] allow_attach_file is ignored");
                                }
                                let commit = c.commit(&label)?;
                                rc.sqlite_databases.insert(
                                    label,
                                    SqliteConfig {
                                        path: c.path.map(|p| resolve(&p, cwd)),
                                        commit,
                                    },
                                );
                            }
                            other => bail!(
                                "[sqlite_database.{label}]: database type {other:?} is not supported by this host (\"spin\")"
                            ),
                        }
                    }
                }
                "state_dir" => {
                    let s = value.as_str().context("state_dir must be a string")?;
                    rc.state_dir = Some(resolve(Path::new(s), dir));
                }
                k if IGNORED_KEYS.contains(&k) => {
                    eprintln!("spin-host: warning: runtime config [{k}] is not supported by this host and is ignored");
                }
                other => bail!("unused runtime config key {other:?}"),
            }
        }
        Ok(rc)
    }

    /// Whether a key-value label exists (`default` always does).
    pub fn has_kv_store(&self, label: &str) -> bool {
        label == "default" || self.key_value_stores.contains_key(label)
    }

    /// Whether a SQLite label exists (`default` always does).
    pub fn has_sqlite_database(&self, label: &str) -> bool {
        label == "default" || self.sqlite_databases.contains_key(label)
    }

    /// Every key-value store, with `default` filled in under `state_dir`.
    pub fn kv_stores(&self, state_dir: &Path) -> BTreeMap<String, KvStoreConfig> {
        let mut m = self.key_value_stores.clone();
        m.entry("default".to_string())
            .or_insert_with(|| KvStoreConfig::Spin {
                path: Some(state_dir.join("sqlite_key_value.db")),
            });
        m
    }

    /// Every SQLite database, with `default` filled in under `state_dir`.
    pub fn sqlite_dbs(&self, state_dir: &Path) -> BTreeMap<String, SqliteConfig> {
        let mut m = self.sqlite_databases.clone();
        m.entry("default".to_string())
            .or_insert_with(|| SqliteConfig {
                path: Some(state_dir.join("sqlite_db.db")),
                commit: SqliteCommitConfig::default(),
            });
        m
    }
}

fn resolve(p: &Path, base: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spin_format() {
        let rc = RuntimeConfig::parse(
            r#"
[key_value_store.cache]
type = "redis"
url = "redis://127.0.0.1:1"
[key_value_store.local]
type = "spin"
path = "kv.db"
[key_value_store.mem]
type = "spin"
[sqlite_database.reports]
type = "spin"
path = "r.db"
"#,
            Path::new("/rc"),
            Path::new("/cwd"),
        )
        .expect("parse");
        assert_eq!(
            rc.key_value_stores.get("cache"),
            Some(&KvStoreConfig::Redis {
                url: "redis://127.0.0.1:1".into()
            })
        );
        assert_eq!(
            rc.key_value_stores.get("local"),
            Some(&KvStoreConfig::Spin {
                path: Some(PathBuf::from("/rc/kv.db"))
            })
        );
        assert_eq!(
            rc.key_value_stores.get("mem"),
            Some(&KvStoreConfig::Spin { path: None })
        );
        assert_eq!(
            rc.sqlite_databases.get("reports"),
            Some(&SqliteConfig {
                path: Some(PathBuf::from("/cwd/r.db")),
                commit: SqliteCommitConfig::default(),
            })
        );
        assert!(rc.has_kv_store("default"));
        assert!(rc.has_kv_store("cache"));
        assert!(!rc.has_kv_store("nope"));
        let stores = rc.kv_stores(Path::new("/state"));
        assert_eq!(
            stores.get("default"),
            Some(&KvStoreConfig::Spin {
                path: Some(PathBuf::from("/state/sqlite_key_value.db"))
            })
        );
    }

    #[test]
    fn sqlite_commit_keys_are_read_per_database() {
        let rc = RuntimeConfig::parse(
            "[sqlite_database.fast]\ntype = \"spin\"\npath = \"f.db\"\ngroup_commit = false\nwrite_turn_deadline_ms = 250",
            Path::new("/rc"),
            Path::new("/cwd"),
        )
        .expect("parse");
        let fast = &rc.sqlite_databases["fast"].commit;
        assert!(!fast.group_commit);
        assert_eq!(fast.write_turn_deadline, Duration::from_millis(250));
        let default = &rc.sqlite_dbs(Path::new("/state"))["default"].commit;
        assert_eq!(default, &SqliteCommitConfig::default());
        assert!(default.group_commit);
        let zero = "[sqlite_database.z]\ntype = \"spin\"\nwrite_turn_deadline_ms = 0";
        assert!(RuntimeConfig::parse(zero, Path::new("."), Path::new(".")).is_err());
        let typo = "[sqlite_database.z]\ntype = \"spin\"\ngroup_comit = false";
        assert!(RuntimeConfig::parse(typo, Path::new("."), Path::new(".")).is_err());
    }

    #[test]
    fn rejects_unknown() {
        assert!(RuntimeConfig::parse("[foo]\nx = 1", Path::new("."), Path::new(".")).is_err());
        assert!(RuntimeConfig::parse(
            "[key_value_store.a]\ntype = \"azure\"",
            Path::new("."),
            Path::new(".")
        )
        .is_err());
        assert!(RuntimeConfig::parse(
            "[key_value_store.a]\ntype = \"redis\"",
            Path::new("."),
            Path::new(".")
        )
        .is_err());
        assert!(RuntimeConfig::parse(
            "[key_value_store.a]\ntype = \"spin\"\nbad = 1",
            Path::new("."),
            Path::new(".")
        )
        .is_err());
    }
}
