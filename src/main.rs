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
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        ferry::cli::LogFormat::Json => builder.json().with_current_span(false).init(),
        ferry::cli::LogFormat::Text => builder.with_ansi(color_on_stderr()).init(),
    }
    match ferry::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(ferry::cli::exit_code_of(&e))
        }
    }
}

/// Colours only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
fn color_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}
