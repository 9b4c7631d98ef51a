//! The integration tests, built as one binary (`cargo test --test it`; one module per area,
//! `cargo test --test it daemon::` runs one area). They drive the real `ferry` binary and real
//! servers started by the harness in `common/`.

mod common;

mod api;
mod daemon;
mod docs;
mod formats;
mod history;
mod host;
mod http;
mod jobs_api;
mod lua_formats;
mod lua_stores;
mod mysql;
mod notify;
mod plugins;
mod postgres;
mod redis;
mod sandbox;
mod scale;
mod server;
mod storage;
mod streaming_memory;
mod strict_workflows;
mod templates;
mod tokens;
mod trust;
mod ui;
