//! `ferry serve`: the daemon, until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;

/// Runs the daemon; exits 0 after a graceful shutdown.
pub fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("cannot handle SIGTERM: {e}");
                        return std::future::pending().await;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        };
        crate::daemon::serve(config, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}
