//! `spin-host` command line: `spin-host up [--from spin.toml]... [--listen 127.0.0.1:3000] ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    },
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
        } => spin_host::up(spin_host::UpOptions {
            from,
            listen,
            runtime_config_file,
            state_dir,
            build,
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
