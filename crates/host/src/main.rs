//! `spin-host` command line: `spin-host up [--from spin.toml]... [--listen 127.0.0.1:3000] ...`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use spin_host::limits::{self, nonzero};

#[derive(Parser)]
#[command(
    name = "spin-host",
    version,
    about = "Runs a Spin application (spin.toml) locally on wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the application.
    Up {
        /// The application manifest (or a directory containing spin.toml). Repeat it to run
        /// several apps of one directory in this process, e.g. an HTTP app and its receivers.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        from: Vec<PathBuf>,
        /// The address to listen on.
        #[arg(long = "listen", default_value = "127.0.0.1:3000")]
        listen: String,
        /// A runtime config file (Spin's format: [key_value_store.X], [sqlite_database.X]).
        #[arg(long = "runtime-config-file")]
        runtime_config_file: Option<PathBuf>,
        /// Where default stores live (default: .spin next to the manifest).
        #[arg(long = "state-dir")]
        state_dir: Option<PathBuf>,
        /// Run each component's build command first.
        #[arg(long = "build")]
        build: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// The host's limits (`0` turns one off). Each flag can also be set by its environment variable.
#[derive(clap::Args)]
struct LimitArgs {
    /// Largest linear memory of one instance (bytes, or with KiB / MiB / GiB), as Spin's flag.
    #[arg(long, env = "SPIN_MAX_INSTANCE_MEMORY", default_value = "128MiB", value_parser = limits::parse_size)]
    max_instance_memory: u64,
    /// Longest life of one instance (seconds, or with ms / s / m).
    #[arg(long, env = "SPIN_HOST_MAX_INSTANCE_TIME", default_value = "30s", value_parser = limits::parse_duration)]
    max_instance_time: Duration,
    /// Largest request body; a larger one gets 413 while it is read.
    #[arg(long, env = "SPIN_HOST_MAX_REQUEST_BODY", default_value = "10MiB", value_parser = limits::parse_size)]
    max_request_body: u64,
    /// Time a connection has to send a request's headers.
    #[arg(long, env = "SPIN_HOST_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = limits::parse_duration)]
    header_read_timeout: Duration,
    /// Time a request body may send nothing while the component waits for it.
    #[arg(long, env = "SPIN_HOST_BODY_IDLE_TIMEOUT", default_value = "10s", value_parser = limits::parse_duration)]
    body_idle_timeout: Duration,
    /// Most connections served at once.
    #[arg(long, env = "SPIN_HOST_MAX_CONNECTIONS", default_value = "512", value_parser = limits::parse_count)]
    max_connections: usize,
}

impl LimitArgs {
    fn into_limits(self) -> spin_host::Limits {
        spin_host::Limits {
            instance: limits::InstanceLimits {
                max_memory: nonzero(
                    usize::try_from(self.max_instance_memory).unwrap_or(usize::MAX),
                ),
                max_time: nonzero(self.max_instance_time),
            },
            http: limits::HttpLimits {
                max_request_body: nonzero(self.max_request_body),
                header_read_timeout: nonzero(self.header_read_timeout),
                body_idle_timeout: nonzero(self.body_idle_timeout),
                max_connections: nonzero(self.max_connections),
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up {
            from,
            listen,
            runtime_config_file,
            state_dir,
            build,
            limits,
        } => spin_host::up(spin_host::UpOptions {
            from,
            listen,
            runtime_config_file,
            state_dir,
            build,
            limits: limits.into_limits(),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One paragraph: the whole cause chain on one line.
            let msg = format!("{e:#}");
            eprintln!(
                "spin-host: error: {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}
