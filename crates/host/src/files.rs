//! Component files (`[component.X] files = [...]`, part of Spin's `factor-wasi`): read-only
//! directories the guest sees through `wasi:filesystem`.
//!
//! - `{ source = "dir", destination = "/path" }` mounts the directory (relative to the manifest)
//!   at `/path`, directly, without copying (as `spin up` does for local apps).
//! - A glob pattern (`"static/**/*"`, `"README.md"`) selects files relative to the manifest
//!   directory; they appear at `/` under their relative paths. Matches are copied once at start-up
//!   into `<state-dir>/files/<component>/`, minus `exclude_files` patterns, and that directory is
//!   mounted at `/`.
//!
//! Mounts are resolved at start-up (a missing source is a start-up error); each instance gets
//! its own read-only preopens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasmtime_wasi::WasiCtxBuilder;

use crate::capability::ConfigureAppContext;

/// One read-only mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Host directory.
    pub host: PathBuf,
    /// Guest path.
    pub guest: String,
}

/// Resolves every loaded component's `files` into mounts (every component with a bad entry is
/// reported at once); glob matches are copied under `<state-dir>/files/<component>/`.
pub fn configure_app(ctx: &ConfigureAppContext<'_>) -> Result<HashMap<String, Vec<Mount>>> {
    ctx.per_component(|id, c| {
        resolve(
            id,
            &ctx.app.base_dir,
            ctx.state_dir,
            &c.files,
            &c.exclude_files,
        )
    })
}

/// Gives one instance its read-only preopens (a mount that cannot be opened is logged and
/// skipped, not fatal).
pub fn preopen(wasi: &mut WasiCtxBuilder, component_id: &str, mounts: &[Mount]) {
    for m in mounts {
        if let Err(e) = wasi.preopened_dir(&m.host, &m.guest, wasmtime_wasi::FsPerms::ReadOnly) {
            eprintln!(
                "spin-host: component {component_id:?}: cannot open {} for {}: {e}",
                m.host.display(),
                m.guest
            );
        }
    }
}

/// Resolves a component's `files` into mounts.
pub fn resolve(
    component_id: &str,
    base_dir: &Path,
    state_dir: &Path,
    files: &[toml::Value],
    exclude: &[String],
) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    let mut patterns = Vec::new();
    for entry in files {
        match entry {
            toml::Value::String(p) => patterns.push(p.clone()),
            toml::Value::Table(t) => mounts.push(placement(component_id, base_dir, t)?),
            other => bail!("component {component_id:?}: invalid `files` entry {other}"),
        }
    }
    if !patterns.is_empty() {
        let staging = state_dir.join("files").join(component_id);
        stage(component_id, base_dir, &staging, &patterns, exclude)?;
        mounts.push(Mount {
            host: staging,
            guest: "/".to_string(),
        });
    }
    Ok(mounts)
}

/// `{ source = "dir", destination = "/path" }`: the directory, mounted as is.
fn placement(component_id: &str, base_dir: &Path, t: &toml::Table) -> Result<Mount> {
    let field = |name: &str| {
        t.get(name).and_then(|v| v.as_str()).with_context(|| {
            format!("component {component_id:?}: a `files` placement needs a string `{name}`")
        })
    };
    let source = field("source")?;
    let destination = field("destination")?;
    if let Some(k) = t.keys().find(|k| *k != "source" && *k != "destination") {
        bail!("component {component_id:?}: unknown field {k:?} in a `files` placement");
    }
    if !destination.starts_with('/') {
        bail!("component {component_id:?}: files destination {destination:?} must be an absolute path");
    }
    let host = base_dir.join(source);
    if !host.is_dir() {
        bail!(
            "component {component_id:?}: files source {} is not a directory",
            host.display()
        );
    }
    Ok(Mount {
        host,
        guest: destination.to_string(),
    })
}

/// Copies the files matching `patterns`, minus `exclude`, into a fresh `staging` directory.
fn stage(
    component_id: &str,
    base_dir: &Path,
    staging: &Path,
    patterns: &[String],
    exclude: &[String],
) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    std::fs::create_dir_all(staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let excludes: Vec<glob::Pattern> = exclude
        .iter()
        .map(|e| {
            glob::Pattern::new(e).with_context(|| {
                format!("component {component_id:?}: invalid exclude_files pattern {e:?}")
            })
        })
        .collect::<Result<_>>()?;
    for pattern in patterns {
        let full = base_dir.join(pattern);
        let full = full
            .to_str()
            .with_context(|| format!("non-UTF-8 path in {pattern:?}"))?;
        let matches = glob::glob(full).with_context(|| {
            format!("component {component_id:?}: invalid files pattern {pattern:?}")
        })?;
        for m in matches {
            let path = m.with_context(|| {
                format!("component {component_id:?}: cannot read a match of {pattern:?}")
            })?;
            if !path.is_file() {
                continue;
            }
            let rel = path.strip_prefix(base_dir).with_context(|| {
                format!("{} is outside the application directory", path.display())
            })?;
            if excludes.iter().any(|e| e.matches_path(rel)) {
                continue;
            }
            copy_into(component_id, &path, &staging.join(rel))?;
        }
    }
    Ok(())
}

fn copy_into(component_id: &str, path: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(path, dest).with_context(|| {
        format!(
            "cannot copy {} for component {component_id:?}",
            path.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_copied_and_placements_mounted() {
        let tmp = std::env::temp_dir().join(format!("spin-host-files-{}", std::process::id()));
        let app = tmp.join("app");
        std::fs::create_dir_all(app.join("static/css")).expect("mkdir");
        std::fs::create_dir_all(app.join("assets")).expect("mkdir");
        std::fs::write(app.join("static/index.html"), "hi").expect("write");
        std::fs::write(app.join("static/css/a.css"), "a").expect("write");
        std::fs::write(app.join("static/secret.key"), "k").expect("write");
        let files = vec![
            toml::Value::String("static/**/*".into()),
            toml::Value::Table(
                toml::from_str("source = \"assets\"\ndestination = \"/assets\"").expect("toml"),
            ),
        ];
        let mounts = resolve(
            "c",
            &app,
            &tmp.join("state"),
            &files,
            &["static/*.key".into()],
        )
        .expect("resolve");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].guest, "/assets");
        let staging = &mounts[1].host;
        assert!(staging.join("static/index.html").is_file());
        assert!(staging.join("static/css/a.css").is_file());
        assert!(!staging.join("static/secret.key").exists());
        let bad = vec![toml::Value::Table(
            toml::from_str("source = \"nope\"\ndestination = \"/x\"").expect("toml"),
        )];
        assert!(resolve("c", &app, &tmp.join("state"), &bad, &[]).is_err());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
