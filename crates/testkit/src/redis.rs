//! A private redis-server per test (or per test binary), stopped by PID on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct RedisServer {
    child: Child,
    port: u16,
    durable: bool,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port with persistence off, and waits for PONG.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_as(false)
    }

    /// Starts `redis-server` as docs/deploy.md tells production to run it: the append-only file
    /// on, fsynced on every write (`appendonly yes`, `appendfsync always`), so what a client was
    /// told is written survives a crash ([`Self::crash`] and [`Self::restart`]).
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_as(true)
    }

    fn start_as(durable: bool) -> anyhow::Result<Self> {
        for _attempt in 0..5 {
            // None: the port was taken in the meantime or the server never answered.
            if let Some(server) = Self::launch(crate::free_port(), durable)? {
                return Ok(server);
            }
        }
        bail!("redis-server did not come up")
    }

    /// Starts `redis-server` on the given loopback `port` (tests that restart the server need
    /// the same port twice), with persistence off, and waits for PONG.
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::launch(port, false)?
            .with_context(|| format!("redis-server did not come up on port {port}"))
    }

    /// One attempt on `port`: the server once it answers PONG, None (server stopped) if it
    /// exited or stayed silent for 10s, an error only if it could not be spawned at all.
    fn launch(port: u16, durable: bool) -> anyhow::Result<Option<Self>> {
        let dir = tempfile::tempdir()?;
        let mut child = spawn(&dir, port, durable)?;
        if wait_for_pong(&mut child, port) {
            return Ok(Some(RedisServer {
                child,
                port,
                durable,
                _dir: dir,
            }));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(None)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, the form of the app's `redis_host` variable.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://host:port`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.host())
    }

    /// Stops the server for real (`SHUTDOWN SAVE`: its data goes to `dump.rdb` in its own dir
    /// first), so clients see a Redis that is down, not one that refuses them.
    pub fn stop_saving(&mut self) -> anyhow::Result<()> {
        // The connection drops as the server exits: redis-cli's own error is expected.
        let _ = cli(self.port, &["SHUTDOWN", "SAVE"]);
        self.child.wait().context("wait for redis-server to exit")?;
        Ok(())
    }

    /// Kills the server (SIGKILL: no save, no goodbye), as a crash or an OOM kill would. Only a
    /// durable server ([`Self::start_durable`]) keeps what it acknowledged.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill redis-server")?;
        self.child.wait().context("wait for redis-server to exit")?;
        Ok(())
    }

    /// Starts the server again on the same port and dir after [`Self::stop_saving`] or
    /// [`Self::crash`]; it loads the saved data (or replays its append-only file), as a
    /// restarted production Redis with persistence does.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut child = spawn(&self._dir, self.port, self.durable)?;
        if !wait_for_pong(&mut child, self.port) {
            let _ = child.kill();
            bail!("redis-server did not come back on port {}", self.port);
        }
        self.child = child;
        Ok(())
    }

    /// Runs one command through `redis-cli --raw` and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        cli(self.port, args)
    }
}

fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .context("run redis-cli")?;
    if !out.status.success() {
        bail!(
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Spawns `redis-server` on loopback `port`, its working files in `dir`: persistence off, or
/// (`durable`) the append-only file fsynced on every write.
fn spawn(dir: &tempfile::TempDir, port: u16, durable: bool) -> anyhow::Result<Child> {
    let persistence: &[&str] = match durable {
        true => &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        false => &["--save", "", "--appendonly", "no"],
    };
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(persistence)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn redis-server (apt-get install -y redis-server)")
}

/// Waits up to 10s for PONG; false as soon as the server exits (port taken) or on timeout.
fn wait_for_pong(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if ping(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn ping(port: u16) -> bool {
    cli(port, &["PING"]).map(|o| o == "PONG").unwrap_or(false)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
