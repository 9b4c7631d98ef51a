//! The `ferry` binary: parse the command line, call the library, print the error chain once.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ferry::cli::Cli::parse();
    // Listing commands end quietly when their reader goes away (`ferry runs list | head`).
    // Commands that write to worker pipes or sockets keep SIGPIPE ignored and handle EPIPE.
    if matches!(
        cli.command,
        ferry::cli::Command::Runs(_)
            | ferry::cli::Command::Check(_)
            | ferry::cli::Command::Jobs { .. }
    ) {
        // SAFETY: restoring the default disposition of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The daemon reports what it does; one-shot commands stay quiet unless asked (FERRY_LOG).
    let default = if matches!(cli.command, ferry::cli::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match ferry::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
