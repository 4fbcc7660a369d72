//! `--build`: runs each component's `[component.X.build] command` before starting, like
//! `spin up --build`.
//!
//! Commands run through `sh -c` in the manifest directory (or `workdir` relative to it), one
//! component after the other in manifest order. Their stdout is sent to the host's stderr so the
//! host's stdout keeps its contract (`Serving ...` first, then request logs). A failing command
//! stops start-up with the component id and the exit status.

use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::manifest::App;

/// Runs every build command of the app.
pub fn build_all(app: &App) -> Result<()> {
    for (id, component) in &app.manifest.components {
        let Some(build) = &component.build else {
            continue;
        };
        let dir = match &build.workdir {
            Some(w) => app.base_dir.join(w),
            None => app.base_dir.clone(),
        };
        if !dir.is_dir() {
            bail!(
                "component {id:?}: build workdir {} does not exist",
                dir.display()
            );
        }
        for command in build.command.iter() {
            eprintln!("spin-host: building component {id:?} with `{command}`");
            let stdout = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot duplicate stderr for the build command")?;
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::inherit())
                .status()
                .with_context(|| {
                    format!("component {id:?}: cannot run build command `{command}`")
                })?;
            if !status.success() {
                bail!(
                    "component {id:?}: build command `{command}` failed ({status}) in {}",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}
