//! docs: shell completions and man pages, generated from the clap definition so they never
//! drift from `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::CliError;
use crate::config::Cli;

/// Print shell completions (e.g. `joyride completions bash > /etc/bash_completion.d/joyride`).
#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the man page (roff), or write one page per command into a directory.
#[derive(Args, Debug, Clone, Default)]
pub struct ManArgs {
    /// Write joyride.1 and joyride-COMMAND.1 pages into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode, CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "joyride", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> Result<ExitCode, CliError> {
    let io = |what: String| move |source| CliError::Io { what, source };
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .map_err(io(format!("cannot write man pages to {}", dir.display())))?;
        }
        None => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(io("cannot write the man page".into()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
