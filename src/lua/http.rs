//! `ferry.http`: HTTP requests from scripts (`get`, `post`, `put`, `patch`, `delete`, `head`,
//! `request`), with headers, query, JSON or text bodies, timeouts and retries; a response body
//! streamed into a store writer (`into`) and a store reader streamed as the request body
//! (`body = store:open(path)`), both in constant memory. Every host is checked against `[http]`
//! in `ferry.toml` (see `crate::http::policy`).
//!
//! A status outside 2xx (and `accept`) raises an error of a kind a script can test (`not_found`
//! for 404, `denied` for 401/403, `server` for most others) with `err.status` and the start of
//! the body in the message. Credentials in a URL are hidden from logs and errors from the
//! moment the request is asked for; messages show URLs without their query.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mlua::{Lua, Table, Value};
use url::Url;

use super::bytes::{SharedWriter, writer_arg};
use super::convert::{json_to_lua, lua_to_json};
use super::host_error::{Classify, Kind, host_err};
use super::limits::Guard;
use super::options::Opts;
use super::rows::lua_err;
use super::{Level, RunHost};
use crate::http::{Client, HttpError, HttpPolicy, Request, RequestBody, Response, client};
use crate::units::{CountRange, DurationRange};

/// `timeout`: the whole exchange.
const TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), Duration::from_secs(7 * 86_400));
/// `idle_timeout`: the wait for the answer and between chunks.
const IDLE_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), Duration::from_secs(86_400));
/// `backoff`: the wait before the first retry.
const BACKOFF_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), Duration::from_secs(600));
/// `retries`.
const RETRIES_RANGE: CountRange = CountRange::new(0, 10);
/// The default `idle_timeout`.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// The default `backoff`.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

/// Per-VM state of the binding: the client is made on first use.
struct Ctx {
    host: Option<Arc<dyn RunHost>>,
    policy: HttpPolicy,
    guard: Guard,
    client: OnceCell<Client>,
}

impl Ctx {
    fn client(&self) -> mlua::Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let g = self.guard.clone();
        let c = Client::new(
            self.policy.clone(),
            Arc::new(move || g.termination().is_some()),
        )
        .map_err(|e| e.to_lua_err())?;
        Ok(self.client.get_or_init(|| c))
    }

    fn hide(&self, secret: &str) {
        if let Some(h) = &self.host
            && !secret.is_empty()
        {
            h.hide(secret);
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                h.hide(&encoded);
            }
        }
    }

    fn log(&self, level: Level, message: &str) {
        if let Some(h) = &self.host {
            h.log(level, message);
        }
    }
}

/// Installs `ferry.http`.
pub(crate) fn install(
    lua: &Lua,
    ferry: &Table,
    policy: &HttpPolicy,
    guard: &Guard,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<()> {
    let ctx = Rc::new(Ctx {
        host,
        policy: policy.clone(),
        guard: guard.clone(),
        client: OnceCell::new(),
    });
    let http = lua.create_table()?;
    let c = ctx.clone();
    http.set(
        "request",
        lua.create_function(move |lua, (method, url, opts): (String, String, Value)| {
            let m = client::method(&method).ok_or_else(|| {
                lua_err(format!(
                    "ferry.http.request: method {method:?} is not supported; expected GET, POST, \
                     PUT, PATCH, DELETE, HEAD or OPTIONS"
                ))
            })?;
            request(lua, &c, m, &url, opts, "ferry.http.request")
        })?,
    )?;
    for (name, m) in [
        ("get", reqwest::Method::GET),
        ("post", reqwest::Method::POST),
        ("put", reqwest::Method::PUT),
        ("patch", reqwest::Method::PATCH),
        ("delete", reqwest::Method::DELETE),
        ("head", reqwest::Method::HEAD),
    ] {
        let c = ctx.clone();
        let func = format!("ferry.http.{name}");
        http.set(
            name,
            lua.create_function(move |lua, (url, opts): (String, Value)| {
                request(lua, &c, m.clone(), &url, opts, &func)
            })?,
        )?;
    }
    ferry.set("http", http)
}

fn duration(
    o: &mut Opts,
    key: &str,
    range: DurationRange,
    func: &str,
) -> mlua::Result<Option<Duration>> {
    let bad = |e: String| lua_err(format!("{func}: option `{key}`: {e}"));
    match o.value(key)? {
        Value::Nil => Ok(None),
        Value::String(s) => range.parse(&s.to_str()?).map(Some).map_err(bad),
        Value::Integer(i) => range.seconds(i as f64).map(Some).map_err(bad),
        Value::Number(n) => range.seconds(n).map(Some).map_err(bad),
        other => Err(bad(format!(
            "expected a duration like \"30s\" or a number of seconds, got {}",
            other.type_name()
        ))),
    }
}

/// A header, query or form value: a string, a number or a boolean.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.to_str().ok().map(|s| s.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A table of name = value (values may be lists for `query`), sorted by name.
fn pairs(v: Value, key: &str, func: &str, lists: bool) -> mlua::Result<Vec<(String, String)>> {
    let t = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => {
            return Err(lua_err(format!(
                "{func}: option `{key}`: expected a table of name = value, got {}",
                other.type_name()
            )));
        }
    };
    let mut out = BTreeMap::<String, Vec<String>>::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let name = match &k {
            Value::String(s) => s.to_str()?.to_string(),
            other => {
                return Err(lua_err(format!(
                    "{func}: option `{key}`: names must be strings, got a {}",
                    other.type_name()
                )));
            }
        };
        let values = match (&v, lists) {
            (Value::Table(list), true) => {
                let mut vs = Vec::new();
                for item in list.sequence_values::<Value>() {
                    let item = item?;
                    vs.push(scalar(&item).ok_or_else(|| {
                        lua_err(format!(
                            "{func}: option `{key}`: `{name}`: expected strings, numbers or booleans, got a {}",
                            item.type_name()
                        ))
                    })?);
                }
                vs
            }
            _ => vec![scalar(&v).ok_or_else(|| {
                lua_err(format!(
                    "{func}: option `{key}`: `{name}`: expected a string, number or boolean, got a {}",
                    v.type_name()
                ))
            })?],
        };
        out.insert(name, values);
    }
    Ok(out
        .into_iter()
        .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
        .collect())
}

fn statuses(v: Value, func: &str) -> mlua::Result<Vec<u16>> {
    let bad = |got: &str| {
        lua_err(format!(
            "{func}: option `accept`: expected a list of HTTP statuses (100 to 599), got {got}"
        ))
    };
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Table(t) => {
            let mut out = Vec::new();
            for item in t.sequence_values::<Value>() {
                match item? {
                    Value::Integer(i) if (100..=599).contains(&i) => out.push(i as u16),
                    Value::Number(n) if n.fract() == 0.0 && (100.0..=599.0).contains(&n) => {
                        out.push(n as u16)
                    }
                    other => return Err(bad(&show_value(&other))),
                }
            }
            Ok(out)
        }
        other => Err(bad(other.type_name())),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        other => format!("a {}", other.type_name()),
    }
}

fn request(
    lua: &Lua,
    ctx: &Ctx,
    method: reqwest::Method,
    url_text: &str,
    opts: Value,
    func: &str,
) -> mlua::Result<Table> {
    // Hide credentials before anything can fail and print them.
    let mut url = Url::parse(url_text).map_err(|e| {
        let shown = url_text.split(['?', '#']).next().unwrap_or_default();
        host_err(
            Kind::Invalid,
            format!("{func}: {shown:?} is not a URL ({e}); expected http://host/path or https://…"),
        )
    })?;
    if let Some(pw) = url.password() {
        ctx.hide(pw);
    }
    let mut o = Opts::new(opts, func)?;
    let headers = pairs(o.value("headers")?, "headers", func, false)?;
    for (name, value) in &headers {
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
        ) {
            ctx.hide(value);
            if let Some((_, cred)) = value.split_once(' ') {
                ctx.hide(cred);
            }
        }
    }
    let query = pairs(o.value("query")?, "query", func, true)?;
    if !query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in &query {
            q.append_pair(k, v);
        }
    }
    let json = o.value("json")?;
    let body = o.value("body")?;
    let into = o.value("into")?;
    let timeout = duration(&mut o, "timeout", TIMEOUT_RANGE, func)?;
    let idle_timeout = duration(&mut o, "idle_timeout", IDLE_RANGE, func)?.unwrap_or(DEFAULT_IDLE);
    let backoff = duration(&mut o, "backoff", BACKOFF_RANGE, func)?.unwrap_or(DEFAULT_BACKOFF);
    let retries = match o.count("retries")? {
        None => 0,
        Some(n) => RETRIES_RANGE
            .count(n.min(i64::MAX as u64) as i64)
            .map_err(|e| lua_err(format!("{func}: option `retries`: {e}")))?
            as u32,
    };
    let accept = statuses(o.value("accept")?, func)?;
    let progress = o.boolean("progress")?.unwrap_or(false);
    o.finish()?;

    let mut headers = headers;
    let has_header =
        |hs: &[(String, String)], name: &str| hs.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let body = match (json, body) {
        (Value::Nil, Value::Nil) => RequestBody::Empty,
        (Value::Nil, Value::String(s)) => RequestBody::Bytes(Bytes::copy_from_slice(&s.as_bytes())),
        (Value::Nil, Value::UserData(ud)) if ud.is::<super::streams::LuaReader>() => {
            let (reader, _label) = super::streams::take_reader(&ud)?;
            RequestBody::Stream(Box::new(reader))
        }
        (Value::Nil, other) => {
            return Err(lua_err(format!(
                "{func}: option `body`: expected a string or a Reader (from store:open(path)), got {}",
                other.type_name()
            )));
        }
        (j, Value::Nil) => {
            let value =
                lua_to_json(&j).map_err(|m| lua_err(format!("{func}: option `json`: {m}")))?;
            let text = serde_json::to_vec(&value)
                .map_err(|e| lua_err(format!("{func}: option `json`: {e}")))?;
            if !has_header(&headers, "content-type") {
                headers.push(("content-type".into(), "application/json".into()));
            }
            RequestBody::Bytes(Bytes::from(text))
        }
        _ => {
            return Err(lua_err(format!(
                "{func}: options `json` and `body` cannot both be given"
            )));
        }
    };
    let sink = match into {
        Value::Nil => None,
        v => Some(writer_arg(&v, &format!("{func}: option `into`"))?),
    };
    let req = Request {
        method: method.clone(),
        url,
        headers,
        body,
        timeout,
        idle_timeout,
        retries,
        backoff,
        accept,
    };
    let client = ctx.client()?;
    let sent = client.send(req, |n| {
        ctx.log(
            Level::Warn,
            &format!(
                "{}: {}; retry {} of {} in {}",
                n.what,
                n.reason,
                n.attempt,
                n.of,
                show_wait(n.wait)
            ),
        )
    });
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some(w) = &sink {
                w.abort();
            }
            return Err(e.to_lua_err());
        }
    };
    response_table(
        lua,
        ctx,
        &mut resp,
        method == reqwest::Method::HEAD,
        sink,
        progress,
    )
}

fn response_table(
    lua: &Lua,
    ctx: &Ctx,
    resp: &mut Response,
    head: bool,
    sink: Option<SharedWriter>,
    progress: bool,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", resp.status)?;
    t.set("ok", (200..300).contains(&resp.status))?;
    let mut shown = resp.url.clone();
    let _ = shown.set_password(None);
    t.set("url", shown.as_str())?;
    let headers = lua.create_table()?;
    for (k, v) in &resp.headers {
        let joined = match headers.raw_get::<Option<String>>(k.as_str())? {
            Some(prev) => format!("{prev}, {v}"),
            None => v.clone(),
        };
        headers.raw_set(k.as_str(), joined)?;
    }
    t.set("headers", headers)?;
    let length = resp.length;
    let mut done: u64 = 0;
    match sink {
        Some(mut w) => {
            let copied = (|| -> Result<u64, HttpError> {
                if head {
                    return Ok(0);
                }
                while let Some(chunk) = resp.chunk()? {
                    w.write_all(&chunk).map_err(|e| HttpError::Io {
                        what: resp.what().to_string(),
                        message: format!("writing the response to {} failed: {e}", w.name()),
                    })?;
                    done += chunk.len() as u64;
                    if progress && let Some(h) = &ctx.host {
                        h.progress(done, length);
                    }
                }
                Ok(done)
            })();
            match copied {
                Ok(n) => {
                    w.commit().map_err(|e| {
                        host_err(
                            Kind::Io,
                            format!("{}: committing {} failed: {e}", resp.what(), w.name()),
                        )
                    })?;
                    t.set("bytes", n)?;
                }
                Err(e) => {
                    w.abort();
                    return Err(e.to_lua_err());
                }
            }
        }
        None => {
            let limit = ctx.guard.memory_limit();
            let mut body = Vec::new();
            if !head {
                while let Some(chunk) = resp.chunk().map_err(|e| e.to_lua_err())? {
                    if (body.len() + chunk.len()) as u64 > limit {
                        return Err(HttpError::TooLarge(format!(
                            "{}: the response body is larger than the run's memory limit ({} bytes); \
                             stream it into a store with `into = store:create(path)`",
                            resp.what(),
                            limit
                        ))
                        .to_lua_err());
                    }
                    body.extend_from_slice(&chunk);
                    if progress && let Some(h) = &ctx.host {
                        h.progress(body.len() as u64, length);
                    }
                }
            }
            t.set("bytes", body.len())?;
            t.set("body", lua.create_string(&body)?)?;
            t.set(
                "json",
                lua.create_function(|lua, this: Table| {
                    let body: mlua::String = this.get("body")?;
                    let j = super::json::parse(&body.as_bytes()).map_err(|m| {
                        host_err(Kind::Data, format!("response:json(): the body is {m}"))
                    })?;
                    json_to_lua(lua, &j)
                })?,
            )?;
        }
    }
    Ok(t)
}

/// A wait as the log shows it: `500ms`, `2s`, `1.5s`.
fn show_wait(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
