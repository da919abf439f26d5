//! `imgvec completions SHELL`: print a completion script for bash, zsh, fish, PowerShell or elvish,
//! generated from the clap definitions so it always matches the flags.
//!
//! Not for: installing it (where a shell looks for completions is the user's business; README says).

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
