//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "An LLM gateway that keeps answering when providers fail.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the gateway (on the built-in default configuration when --config is not given).
    Serve {
        /// TOML config file.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides [server] listen.
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Server threads (each with its own runtime and listener); overrides [server] threads.
        /// 0 = one per CPU core.
        #[arg(long, env = "SWITCHYARD_THREADS")]
        threads: Option<usize>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SWITCHYARD_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a config and print the resolved routing table (secrets redacted).
    Check {
        /// TOML config file; without it, the built-in default is checked.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}
