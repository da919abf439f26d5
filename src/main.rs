//! The `imgvec` binary: parse the command line, run the command, turn errors into exit codes.

use std::process::ExitCode;

use clap::Parser;

use imgvec::cli::{Cli, Command};
use imgvec::commands;

fn main() -> ExitCode {
    imgvec::tune_allocator();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Embed(a) => commands::embed::run(a),
        Command::CreateIndex(a) => commands::create_index::run(a),
        Command::Ingest(a) => commands::ingest::run(a),
        Command::Search(a) => commands::search::run(a),
        Command::Prune(a) => commands::prune::run(a),
        Command::Copy(a) => commands::copy::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::FetchModel(a) => commands::fetch_model::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgvec: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
