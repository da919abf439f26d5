//! The `imgvec` binary: parse the command line, run the command, turn errors into exit codes.
//!
//! Exit codes: 0 success; 1 an error, or some inputs failed; 2 a usage error (clap's); 130
//! interrupted by Ctrl-C (README lists them).

use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches};

use imgvec::cli::{Cli, Command};
use imgvec::commands;

/// Whether NO_COLOR (<https://no-color.org>) asks for no colours: set and not empty.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn main() -> ExitCode {
    imgvec::tune_allocator();
    let mut cmd = Cli::command();
    if no_color() {
        cmd = cmd.color(ColorChoice::Never);
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::Embed(a) => commands::embed::run(a),
        Command::CreateIndex(a) => commands::create_index::run(a),
        Command::Ingest(a) => commands::ingest::run(a),
        Command::Search(a) => commands::search::run(a),
        Command::Dupes(a) => commands::dupes::run(a),
        Command::Classify(a) => commands::classify::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Prune(a) => commands::prune::run(a),
        Command::Copy(a) => commands::copy::run(a),
        Command::Watch(a) => commands::watch::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::FetchModel(a) => commands::fetch_model::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Completions(a) => commands::completions::run(a),
        Command::Man(a) => commands::man::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgvec: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
