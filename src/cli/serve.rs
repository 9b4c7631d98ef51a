//! `ferry serve`: the daemon and its HTTP API, until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::daemon::lock::ProjectLock;

/// Arguments of `ferry serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API, e.g. 127.0.0.1:7411 (default from [api] listen). Port 0 picks a
    /// free port; the address is printed in the log.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

/// Runs the daemon; exits 0 after a graceful shutdown.
pub fn serve(config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // First of all: one daemon per project (before the port, whose error would say less).
        // Files and the history are read on a blocking thread, never on the runtime's.
        let lock = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || ProjectLock::acquire(&config)).await??
        };
        let listen = args.listen.unwrap_or_else(|| config.api.listen.clone());
        let addrs: Vec<_> = tokio::net::lookup_host(&listen)
            .await
            .map_err(|e| {
                super::Refused(format!(
                    "invalid API address {listen:?} ({e}): expected HOST:PORT like 127.0.0.1:7411"
                ))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(
                super::Refused(format!("API address {listen:?} resolves to no address")).into(),
            );
        }
        // Tokens made by `ferry tokens create` turn auth on as `[api] token` does.
        let auth_on = config.api.token.is_some() || {
            let config = config.clone();
            tokio::task::spawn_blocking(move || crate::history::open(&config)?.has_tokens())
                .await??
        };
        for a in &addrs {
            api::check_bind(a, auth_on).map_err(|m| anyhow::Error::new(super::Refused(m)))?;
        }
        let listener = tokio::net::TcpListener::bind(&addrs[..])
            .await
            .map_err(|e| super::Refused(format!("cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr()?;
        // The address it really listens on (`--listen`, a port 0 resolved), for the hosts list.
        let mut config = config;
        config.api.listen = local.to_string();
        let mut daemon = Daemon::start(config, lock).await?;
        let daemon = tokio::task::spawn_blocking(move || {
            daemon.set_listen(&format!("http://{local}"));
            daemon
        })
        .await?;
        let state = ApiState::new(daemon.handle())?;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(api::serve(listener, state, async move {
            let _ = stop_rx.changed().await;
        }));
        tracing::info!("API listening on http://{local}");
        // Pings go on through the shutdown's grace period: the daemon is alive while it drains.
        let (wd_stop, wd_rx) = tokio::sync::watch::channel(false);
        let watchdog = crate::daemon::systemd::spawn_watchdog(
            daemon.handle().dispatcher.history().clone(),
            wd_rx,
        );
        crate::daemon::systemd::ready(&format!("serving; API on http://{local}"));
        wait_for_signal().await;
        crate::daemon::systemd::stopping();
        let _ = stop_tx.send(true);
        daemon.shutdown().await;
        let _ = wd_stop.send(true);
        if let Some(w) = watchdog {
            let _ = w.await;
        }
        match server.await {
            Ok(Err(e)) => tracing::error!("API server: {e}"),
            Err(e) => tracing::error!("API server task: {e}"),
            Ok(Ok(())) => {}
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot handle SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
