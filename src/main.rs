use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = reclab::cli::Cli::parse();
    match cli.command {
        reclab::cli::Command::Check { .. } => {
            eprintln!("reclab: check is not implemented yet");
            ExitCode::from(2)
        }
    }
}
