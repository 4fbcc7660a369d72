//! The host as a subprocess: `spin-host up --from <manifest> --listen 127.0.0.1:<free port>`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::http::{request, Response};

/// Configures one run of the host.
pub struct SpinAppBuilder {
    binary: Option<PathBuf>,
    manifest: PathBuf,
    launcher: Option<(PathBuf, Vec<String>)>,
    envs: Vec<(String, String)>,
    args: Vec<String>,
    state_dir: Option<PathBuf>,
    runtime_config: Option<PathBuf>,
    startup_timeout: Duration,
}

impl SpinAppBuilder {
    /// Sets an environment variable of the host process (e.g. `SPIN_VARIABLE_REDIS_HOST`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Sets `SPIN_VARIABLE_<NAME>` for an application variable.
    pub fn variable(self, name: &str, value: impl Into<String>) -> Self {
        let key = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        self.env(key, value)
    }

    /// Extra arguments after `up` (e.g. `--build`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// `--state-dir`: keep it across two runs to test persistence across restarts.
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// `--runtime-config-file`.
    pub fn runtime_config(mut self, path: impl AsRef<Path>) -> Self {
        self.runtime_config = Some(path.as_ref().to_owned());
        self
    }

    /// Runs another Spin-compatible CLI instead of `spin-host` (the real `spin`, which takes the
    /// same `up --from --listen --state-dir --runtime-config-file` arguments).
    pub fn binary(mut self, path: impl AsRef<Path>) -> Self {
        self.binary = Some(path.as_ref().to_owned());
        self
    }

    /// Runs `program args...` instead of `<cli> up --from <manifest>`: a script that starts the
    /// app itself (`scripts/up.sh --spin`, which runs two Spin apps), given the same `--listen`,
    /// `--state-dir` and `--runtime-config-file` arguments and the same environment.
    pub fn launcher(mut self, program: impl AsRef<Path>, args: &[&str]) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        self.launcher = Some((program.as_ref().to_owned(), args));
        self
    }

    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    fn command(&self, listen: &str, logs: &Path) -> anyhow::Result<Command> {
        let mut cmd = match &self.launcher {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            None => {
                let mut cmd = Command::new(self.binary.clone().unwrap_or_else(crate::host_bin));
                cmd.arg("up").arg("--from").arg(&self.manifest);
                cmd
            }
        };
        // Its own process group: real Spin runs plugin triggers (cron) as child processes, a
        // launcher runs several apps, and stopping the app must stop them all.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg("--listen").arg(listen);
        if let Some(dir) = &self.state_dir {
            cmd.arg("--state-dir").arg(dir);
        }
        if let Some(rc) = &self.runtime_config {
            cmd.arg("--runtime-config-file").arg(rc);
        }
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(File::create(logs.join("stdout.log"))?)
            .stderr(File::create(logs.join("stderr.log"))?);
        Ok(cmd)
    }

    /// Starts the host and waits until it prints `Serving http://...` and accepts connections.
    /// If the host exits first, the error carries its stderr.
    ///
    /// The port is one that was free a moment ago; another process of a parallel test run can
    /// take it in between, so a start that fails only because the address is in use is retried
    /// on a fresh port (a few times) instead of failing the test.
    pub fn start(self) -> anyhow::Result<SpinApp> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.start_once()? {
                Started::Serving(app) => return Ok(app),
                Started::PortTaken(_) if attempts < 5 => continue,
                Started::PortTaken(err) => return Err(err),
            }
        }
    }

    fn start_once(&self) -> anyhow::Result<Started> {
        let logs = tempfile::tempdir()?;
        let port = crate::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = self
            .command(&listen, logs.path())?
            .spawn()
            .context("spawn spin-host")?;
        let mut app = SpinApp {
            child,
            base_url: format!("http://{listen}"),
            port,
            logs,
        };
        let deadline = Instant::now() + self.startup_timeout;
        loop {
            if let Some(status) = app.child.try_wait()? {
                let err = anyhow::anyhow!(
                    "spin-host exited with {status} before serving\nstdout:\n{}\nstderr:\n{}",
                    app.stdout(),
                    app.stderr()
                );
                if app.stderr().contains("Address already in use") {
                    return Ok(Started::PortTaken(err));
                }
                return Err(err);
            }
            if app.stdout().contains("Serving http://")
                && std::net::TcpStream::connect(&listen).is_ok()
            {
                return Ok(Started::Serving(app));
            }
            if Instant::now() > deadline {
                bail!(
                    "spin-host did not serve within {:?}\nstdout:\n{}\nstderr:\n{}",
                    self.startup_timeout,
                    app.stdout(),
                    app.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs the host expecting it to exit by itself (a misconfiguration), within `timeout`.
    /// Returns the exit status, stdout and stderr.
    pub fn run_to_exit(self, timeout: Duration) -> anyhow::Result<(ExitStatus, String, String)> {
        let logs = tempfile::tempdir()?;
        let listen = format!("127.0.0.1:{}", crate::free_port());
        self.run_to_exit_on(&listen, logs.path(), timeout)
    }

    /// As [`Self::run_to_exit`], with an explicit `--listen` address (e.g. a port in use).
    pub fn run_to_exit_on(
        self,
        listen: &str,
        logs: &Path,
        timeout: Duration,
    ) -> anyhow::Result<(ExitStatus, String, String)> {
        let mut child = self.command(listen, logs)?.spawn()?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "spin-host still running after {timeout:?}; stderr:\n{}",
                    std::fs::read_to_string(logs.join("stderr.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
        Ok((status, read("stdout.log"), read("stderr.log")))
    }
}

/// How one start attempt ended.
enum Started {
    Serving(SpinApp),
    PortTaken(anyhow::Error),
}

/// A running host, killed on drop.
pub struct SpinApp {
    child: Child,
    pub base_url: String,
    pub port: u16,
    logs: tempfile::TempDir,
}

impl SpinApp {
    /// A builder for `spin-host up --from manifest`.
    pub fn builder(manifest: impl AsRef<Path>) -> SpinAppBuilder {
        SpinAppBuilder {
            binary: None,
            manifest: manifest.as_ref().to_owned(),
            launcher: None,
            envs: Vec::new(),
            args: Vec::new(),
            state_dir: None,
            runtime_config: None,
            startup_timeout: Duration::from_secs(120),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The host's process id (to read its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        request("GET", &self.url(path), &[], None)
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        request(method, &self.url(path), headers, body)
    }

    /// Sends `body` as `application/json` with extra `headers`.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> anyhow::Result<Response> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let bytes = serde_json::to_vec(body)?;
        request(method, &self.url(path), &all, Some(&bytes))
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits until `cond(stdout + stderr)` holds, for log-driven assertions (trigger delivery).
    pub fn wait_for_log(&self, timeout: Duration, cond: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if cond(&all) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the host (SIGKILL) and waits for it.
    pub fn stop(mut self) {
        self.kill();
    }

    /// SIGKILL to the host's whole process group (plugin triggers included), then reaps it.
    fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpinApp {
    fn drop(&mut self) {
        self.kill();
    }
}
