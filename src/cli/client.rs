//! The CLI's client of a running daemon's HTTP API (`--server URL`; the token from
//! `FERRY_TOKEN`, else `[api] token` of the project's `ferry.toml`).

use anyhow::{Context, bail};
use reqwest::blocking::{Client as Http, Response};
use serde_json::{Value, json};

use crate::history::{Artifact, LogLine, Notification, RunRecord, RunState};

/// A run with its logs and artifacts.
pub type RunDetail = (RunRecord, Vec<LogLine>, Vec<Artifact>, Vec<Notification>);

/// A client of one daemon.
pub struct Client {
    base: String,
    token: Option<String>,
    http: Http,
}

/// What the API said when it refused a request.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({status}, {code})")]
pub struct ApiRefusal {
    /// HTTP status.
    pub status: u16,
    /// The error code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7411`), with the token of `FERRY_TOKEN` or
    /// else of the project's `[api] token`.
    pub fn new(base: &str, config: &crate::config::Config) -> anyhow::Result<Client> {
        let http = Http::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: std::env::var("FERRY_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| config.api.token.clone()),
            http,
        })
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Response = req
            .send()
            .with_context(|| format!("cannot reach the ferry daemon at {}", self.base))?;
        let status = resp.status();
        let value: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let e = &value["error"];
            return Err(ApiRefusal {
                status: status.as_u16(),
                code: e["code"].as_str().unwrap_or("?").to_string(),
                message: e["message"].as_str().unwrap_or("no message").to_string(),
            }
            .into());
        }
        Ok(value)
    }

    /// Triggers a run; returns its id and state.
    pub fn trigger(
        &self,
        job: &str,
        params: Value,
        at: Option<String>,
    ) -> anyhow::Result<(i64, String)> {
        let mut body = json!({ "params": params });
        if let Some(at) = at {
            body["at"] = json!(at);
        }
        let v = self.send(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{job}/runs"),
            Some(body),
            &[],
        )?;
        Ok((
            v["id"].as_i64().unwrap_or(0),
            v["state"].as_str().unwrap_or("?").to_string(),
        ))
    }

    /// Lists runs.
    pub fn runs(
        &self,
        job: Option<&str>,
        states: &[RunState],
        limit: u32,
    ) -> anyhow::Result<(Vec<RunRecord>, u64)> {
        let mut q = vec![("page_size", limit.clamp(1, 500).to_string())];
        if let Some(j) = job {
            q.push(("job", j.to_string()));
        }
        if !states.is_empty() {
            q.push((
                "state",
                states
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let v = self.send(reqwest::Method::GET, "/api/v1/runs", None, &q)?;
        let items: Vec<RunRecord> = serde_json::from_value(v["items"].clone())
            .context("unexpected runs list from the daemon")?;
        Ok((items, v["total"].as_u64().unwrap_or(0)))
    }

    /// One run with logs and artifacts.
    pub fn run(&self, id: i64) -> anyhow::Result<RunDetail> {
        let v = self.send(
            reqwest::Method::GET,
            &format!("/api/v1/runs/{id}"),
            None,
            &[],
        )?;
        let run: RunRecord =
            serde_json::from_value(v.clone()).context("unexpected run from the daemon")?;
        let artifacts: Vec<Artifact> =
            serde_json::from_value(v["artifacts"].clone()).unwrap_or_default();
        let notifications: Vec<Notification> =
            serde_json::from_value(v["notifications"].clone()).unwrap_or_default();
        let mut logs = Vec::new();
        let mut after = 0;
        loop {
            let page = self.send(
                reqwest::Method::GET,
                &format!("/api/v1/runs/{id}/logs"),
                None,
                &[("after", after.to_string())],
            )?;
            let items: Vec<LogLine> =
                serde_json::from_value(page["items"].clone()).unwrap_or_default();
            if items.is_empty() {
                break;
            }
            after = page["next_after"].as_i64().unwrap_or(after);
            logs.extend(items);
        }
        Ok((run, logs, artifacts, notifications))
    }

    /// Asks a run to stop; false when it had ended.
    pub fn cancel(&self, id: i64) -> anyhow::Result<bool> {
        match self.send(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/cancel"),
            None,
            &[],
        ) {
            Ok(_) => Ok(true),
            Err(e) => match e.downcast_ref::<ApiRefusal>() {
                Some(r) if r.status == 409 => Ok(false),
                _ => Err(e),
            },
        }
    }

    /// Pauses or resumes a job; returns whether that changed anything.
    pub fn pause(&self, job: &str, paused: bool) -> anyhow::Result<bool> {
        let what = if paused { "pause" } else { "resume" };
        let v = self.send(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{job}/{what}"),
            None,
            &[],
        )?;
        Ok(v["changed"].as_bool().unwrap_or(true))
    }

    /// Opens the event stream of a run's log lines after `after` (see [`super::follow`]).
    pub fn follow_stream(&self, id: i64, after: i64) -> anyhow::Result<Response> {
        let http = Http::builder()
            .timeout(None)
            .build()
            .context("cannot build the HTTP client")?;
        let url = format!("{}/api/v1/runs/{id}/logs", self.base);
        let mut req = http
            .get(&url)
            .query(&[("follow", "true".to_string()), ("after", after.to_string())])
            .header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach the ferry daemon at {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let v: Value = resp.json().unwrap_or(Value::Null);
            return Err(ApiRefusal {
                status,
                code: v["error"]["code"].as_str().unwrap_or("?").to_string(),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string(),
            }
            .into());
        }
        Ok(resp)
    }

    /// Runs a run again; returns the new run's id and state.
    pub fn rerun(&self, id: i64) -> anyhow::Result<(i64, String)> {
        let v = self.send(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/rerun"),
            None,
            &[],
        )?;
        Ok((
            v["id"].as_i64().unwrap_or(0),
            v["state"].as_str().unwrap_or("?").to_string(),
        ))
    }

    /// Deletes a run.
    pub fn delete(&self, id: i64) -> anyhow::Result<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/api/v1/runs/{id}"),
            None,
            &[],
        )?;
        Ok(())
    }

    /// The jobs as the daemon sees them.
    pub fn jobs(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.send(reqwest::Method::GET, "/api/v1/jobs", None, &[])?;
        match v["items"].as_array() {
            Some(items) => Ok(items.clone()),
            None => bail!("unexpected jobs list from the daemon"),
        }
    }

    /// The newest versions of a job's script (at most `limit`), without their sources.
    pub fn versions(&self, job: &str, limit: u32) -> anyhow::Result<Vec<Value>> {
        let v = self.send(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{job}/versions"),
            None,
            &[("page_size", limit.to_string())],
        )?;
        match v["items"].as_array() {
            Some(items) => Ok(items.clone()),
            None => bail!("unexpected versions list from the daemon"),
        }
    }

    /// The source of one version of a job's script.
    pub fn version_source(&self, job: &str, hash: &str) -> anyhow::Result<String> {
        let v = self.send(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{job}/versions/{hash}"),
            None,
            &[],
        )?;
        match v["source"].as_str() {
            Some(s) => Ok(s.to_string()),
            None => bail!("the daemon has no source for version {hash} of {job:?}"),
        }
    }
}
