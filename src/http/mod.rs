//! Outbound HTTP for scripts (`ferry.http`): the host policy of `[http]` in `ferry.toml`
//! ([`policy`]) and the client that applies it on every connection and redirect, with timeouts,
//! retries and streamed bodies ([`client`]). The Lua binding is `lua/http.rs`.

pub mod client;
pub mod policy;

pub use client::{Client, HttpError, Request, RequestBody, Response, RetryNotice, shown_url};
pub use policy::{HttpPolicy, Refusal};
