//! What every capability module shares (a cut-down `spin-factors`).
//!
//! In Spin each factor (`factor-key-value`, `factor-sqlite`, ...) has a `configure_app` step: it
//! reads its own part of the manifest and of the runtime config, rejects what is wrong, and
//! returns its app state, from which per-instance state is built later. Here each capability
//! module has a `configure_app(&ConfigureAppContext)` function in the same role; it reports
//! every problem it finds at once (through [`Problems`]), not only the first, and
//! `runtime::AppRuntime::load` runs all of them before compiling anything, so one start-up
//! lists every bad label of every capability.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::manifest::{App, Component};
use crate::runtime_config::RuntimeConfig;
use crate::variables::AppVariables;

/// Everything a capability's `configure_app` may read.
pub struct ConfigureAppContext<'a> {
    /// The parsed manifest.
    pub app: &'a App,
    /// Resolved application variables.
    pub vars: &'a AppVariables,
    /// The runtime config file (or its defaults).
    pub runtime_config: &'a RuntimeConfig,
    /// `--state-dir`.
    pub state_dir: &'a Path,
    /// The components this host loads (those some trigger uses), by id.
    pub components: Vec<(&'a str, &'a Component)>,
}

impl<'a> ConfigureAppContext<'a> {
    /// A context loading every triggered component of `app`.
    pub fn new(
        app: &'a App,
        vars: &'a AppVariables,
        runtime_config: &'a RuntimeConfig,
        state_dir: &'a Path,
    ) -> Self {
        // Spin loads only triggered components; a component reachable only by service chaining
        // still needs an HTTP trigger.
        let triggered = app.triggered_components();
        let components = app
            .manifest
            .components
            .iter()
            .filter(|(id, _)| triggered.contains(*id))
            .map(|(id, c)| (id.as_str(), c))
            .collect();
        ConfigureAppContext {
            app,
            vars,
            runtime_config,
            state_dir,
            components,
        }
    }

    /// Runs `f` on every loaded component: the results by component id, or every error.
    pub fn per_component<T>(
        &self,
        mut f: impl FnMut(&str, &Component) -> Result<T>,
    ) -> Result<HashMap<String, T>> {
        let mut problems = Problems::default();
        let mut out = HashMap::with_capacity(self.components.len());
        for (id, c) in &self.components {
            if let Some(v) = problems.check(f(id, c)) {
                out.insert(id.to_string(), v);
            }
        }
        problems.finish_with(out)
    }
}

/// Collects the errors of a configuration step so that all of them are reported together.
#[derive(Debug, Default)]
pub struct Problems(Vec<anyhow::Error>);

impl Problems {
    /// Records an error (the problems of an already combined error are recorded one by one).
    pub fn push(&mut self, e: anyhow::Error) {
        match e.downcast::<ConfigErrors>() {
            Ok(many) => self.0.extend(many.0),
            Err(e) => self.0.push(e),
        }
    }

    /// The value, or `None` after recording the error.
    pub fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    /// `Ok(value)` if nothing went wrong; else the one error as it was, or all of them.
    pub fn finish_with<T>(mut self, value: T) -> Result<T> {
        match self.0.len() {
            0 => Ok(value),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigErrors(self.0).into()),
        }
    }

    /// `Ok(())` if nothing went wrong.
    pub fn finish(self) -> Result<()> {
        self.finish_with(())
    }
}

/// Several configuration errors reported as one.
#[derive(Debug)]
pub struct ConfigErrors(Vec<anyhow::Error>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[anyhow::Error] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration errors:", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "\n  {}) {e:#}", i + 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn one_error_stays_as_it_was_and_several_are_listed_flat() {
        assert!(Problems::default().finish().is_ok());

        let mut one = Problems::default();
        one.push(anyhow!("inner").context("outer"));
        let e = one.finish().expect_err("one error");
        assert_eq!(format!("{e:#}"), "outer: inner");

        let mut inner = Problems::default();
        inner.push(anyhow!("a"));
        inner.push(anyhow!("b"));
        let mut outer = Problems::default();
        outer.push(inner.finish().expect_err("two errors"));
        outer.push(anyhow!("c"));
        let e = outer.finish().expect_err("three errors");
        let all = e.downcast_ref::<ConfigErrors>().expect("combined");
        assert_eq!(all.errors().len(), 3);
        assert_eq!(
            format!("{e:#}"),
            "3 configuration errors:\n  1) a\n  2) b\n  3) c"
        );
    }
}
