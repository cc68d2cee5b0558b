//! The `reclab` binary: parse the command line, run it (`reclab::app`), map the outcome to an
//! exit code: 0 success/verified, 1 verification failed, 2 operational error.

use std::process::ExitCode;

use reclab::app;

fn main() -> ExitCode {
    let cli = app::cli::parse();
    init_tracing(cli.verbose);
    exit_code(app::run(cli))
}

/// The one place where an error becomes an exit code: an interrupted run (unwound first) exits
/// 130 after SIGINT and 143 after SIGTERM; every other error is an operational error, 2.
fn exit_code(outcome: anyhow::Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        // (A closed stdout is no error: `app::out::Out` drops the rest of the output.)
        Err(e) => {
            eprintln!("reclab: error: {e:#}");
            let interrupted = reclab::base::cancel::Interrupted::find(&e);
            ExitCode::from(interrupted.map_or(2, |i| i.exit_code()))
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
