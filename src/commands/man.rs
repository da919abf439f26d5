//! `imgvec man`: the man page in roff, generated from the clap definitions (`clap_mangen`): printed
//! as `imgvec.1`, or with `--out DIR` written as `imgvec.1` plus one `imgvec-COMMAND.1` per
//! subcommand.
//!
//! Not for: installing pages into the system's man path.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};

pub fn run(args: &ManArgs) -> Result<ExitCode> {
    let cmd = Cli::command();
    match &args.out {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("writing the man page to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_pages(&cmd, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `imgvec.1` and `imgvec-SUB.1` for each subcommand (clap_mangen names them after the command path).
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    clap_mangen::generate_to(cmd.clone(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    eprintln!(
        "imgvec: wrote imgvec.1 and imgvec-COMMAND.1 pages into {}",
        dir.display()
    );
    Ok(())
}
