//! The S3 client of an S3 store: endpoint, credentials, timeouts and retries.

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::{ErrorKind, S3Options};

/// Retries of S3 requests: a few quick ones, so an unreachable server fails a run within
/// seconds rather than object_store's default three minutes.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

pub(super) fn build_s3(
    bucket: &str,
    o: &S3Options,
) -> Result<object_store::aws::AmazonS3, ErrorKind> {
    let http_endpoint = o
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60))
        .with_allow_http(o.allow_http.unwrap_or(http_endpoint));
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(client)
        .with_retry(retry_config());
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &o.region {
        b = b.with_region(r);
    }
    if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
        b = b
            .with_access_key_id(k.expose())
            .with_secret_access_key(s.expose());
    }
    if let Some(t) = &o.session_token {
        b = b.with_token(t.expose());
    }
    if let Some(p) = o.path_style {
        b = b.with_virtual_hosted_style_request(!p);
    }
    // object_store's builder errors name the option, never its value.
    b.build().map_err(|e| ErrorKind::Config(e.to_string()))
}
