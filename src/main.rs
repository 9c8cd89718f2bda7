//! The `joyride` binary: parses the configuration, sets up logging and the runtime, runs
//! the daemon, and maps failures to exit codes (2: configuration or start-up, 1: failure
//! while running). A command (`joyride health`, `records`, ...) runs instead of the daemon.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use joyride::app::{self, StartError};
use joyride::config::{Cli, Config, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return joyride::cli::run(command, &cli);
    }
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("joyride: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("joyride: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(config, app::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<StartError>().is_some() => {
            eprintln!("joyride: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("joyride: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
