//! The web UI in a real headless Chromium (Debian `chromium` + `chromium-driver`, installed by
//! tests/setup.sh), driven over WebDriver (fantoccini) against a real `ferry serve`.
//!
//! Each test function uses one browser session. Waits poll the page for what should appear,
//! with generous deadlines; nothing asserts on elapsed time. Screenshots of each page go to
//! `target/ui-screenshots/`.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::TOKEN;
use common::{Daemon, Project, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long any one thing may take to appear on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);

/// A chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}); install it with tests/setup.sh")
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::new();
        wait_for("chromedriver to listen", WAIT, || {
            http.get(format!("{url}/status"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session.
async fn browser(driver: &Driver) -> Client {
    let mut opts = json!({ "args": [
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1200,1000", "--lang=en-US"
    ]});
    if std::path::Path::new("/usr/bin/chromium").exists() {
        opts["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn page_text(c: &Client) -> String {
    match c.find(Locator::Css("main")).await {
        Ok(m) => m.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until an element matching `css` shows a text containing `want`; returns that text.
async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            for e in els {
                if let Ok(t) = e.text().await
                    && t.contains(want)
                {
                    return t;
                }
            }
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {want:?} in {css}; the page says:\n{}",
                page_text(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_el(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!(
            "no {css} on the page ({e}); it says:\n{}",
            page_text(c).await
        ),
    }
}

/// Clicks the element `css`, again when the page replaced it between finding and clicking (a
/// run page redraws its buttons as the run's events arrive).
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        match wait_el(c, css).await.click().await {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {}
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

/// What the button `css` shows: `{enabled, text, title, why}`, `why` being the text of what
/// describes it (`aria-describedby`); null while there is no such button.
async fn button_state(c: &Client, css: &str) -> Value {
    c.execute(
        "const b = document.querySelector(arguments[0]); if (!b) return null; \
         const ids = (b.getAttribute('aria-describedby') || '').split(' ').filter(Boolean); \
         return { enabled: !b.disabled, text: b.textContent, title: b.title, \
           why: ids.map((i) => (document.getElementById(i) || {}).textContent || '').join(' ') };",
        vec![json!(css)],
    )
    .await
    .unwrap_or(Value::Null)
}

/// Waits until the button `css` is disabled with the reason that it needs the `need` scope
/// and the session has `have`, as its title and in the visible note that describes it
/// ("LABEL: REASON"); or, with `None`, until it is enabled with neither.
async fn wait_button(c: &Client, css: &str, scopes: Option<(&str, &str)>) {
    let reason = scopes
        .map(|(need, have)| format!("needs a token with the {need} scope; this one is {have}"));
    let shows = |b: &Value| {
        let text = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
        match &reason {
            Some(r) => {
                b["enabled"] == false
                    && text("title") == *r
                    && text("why").contains(&text("text"))
                    && text("why").ends_with(&format!(": {r}"))
            }
            None => b["enabled"] == true && text("title").is_empty() && text("why").is_empty(),
        }
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = button_state(c, css).await;
        if shows(&seen) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{css} shows {seen}, not {reason:?}; the page says:\n{}",
                page_text(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens `url` and asserts its page is no wider than the window (360 px, less its scroll bar);
/// a screenshot `name`.
async fn fits_the_screen(c: &Client, url: &str, name: &str) {
    c.goto(url).await.unwrap();
    wait_el(c, "main h1").await;
    wait_el(c, "main .card").await;
    let widths = c
        .execute(
            "const d = document.documentElement; return [d.scrollWidth, d.clientWidth]",
            vec![],
        )
        .await
        .unwrap();
    shot(c, name).await;
    let (wide, room) = (widths[0].as_u64(), widths[1].as_u64());
    assert!(
        wide.is_some_and(|w| w <= 360) && wide <= room,
        "{url} is {wide:?} px wide in a window of {room:?} px"
    );
}

/// Signs in on the login page with `token`; back on the overview, the header names `who`.
async fn sign_in(c: &Client, base: &str, token: &str, who: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    wait_el(c, "#token").await.send_keys(token).await.unwrap();
    click(c, ".login button[type=submit]").await;
    wait_text(c, "h1", "Overview").await;
    wait_text(c, "#who", &format!("signed in as {who}")).await;
}

/// Signs out with the header's button.
async fn sign_out(c: &Client) {
    click(c, "#logout").await;
    wait_el(c, "#token").await;
}

/// The run id of the run page the browser shows.
async fn run_id_shown(c: &Client) -> i64 {
    run_shown_besides(c, None).await
}

/// The run id of the run page the browser shows, once it is not the page of run `old`.
async fn run_shown_besides(c: &Client, old: Option<i64>) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.expect("current url");
        if let Some(id) = url
            .path()
            .strip_prefix("/runs/")
            .and_then(|s| s.parse().ok())
            .filter(|id| Some(*id) != old)
        {
            wait_el(c, "#state .badge").await;
            return id;
        }
        assert!(Instant::now() < deadline, "no run page, at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn jobs_project(config: &str) -> Project {
    let p = Project::with_config(config);
    std::fs::create_dir_all(p.at("data/gate")).unwrap();
    std::fs::create_dir_all(p.at("inbox/drop")).unwrap();
    p.script(
        "export",
        r#"return {
  description = "Export orders to CSV",
  params = {
    since = { type = "string", default = "2026-01-01", description = "first day to export" },
    limit = { type = "integer", required = true, description = "rows at most" },
  },
  run = function(ctx)
    ctx.log.info("exporting %d rows since %s", ctx.params.limit, ctx.params.since)
    ctx.progress(1, 2)
    local gate = ferry.store("data/gate")
    while not gate:exists("go") do end
    ctx.log.info("second half written")
    ctx.progress(2, 2)
    local out = ferry.store("data/out")
    out:write("orders.csv", "id,total\n1,9.50\n2,12.00\n")
    ctx.artifact(out, "orders.csv")
    return { rows = ctx.params.limit }
  end,
}
"#,
    );
    p.script(
        "slow",
        r#"return { description = "Runs until cancelled",
  run = function(ctx) ctx.log.info("working"); while true do end end }
"#,
    );
    p.script(
        "drop",
        r#"return { description = "Imports dropped CSV files",
  watch = { path = "inbox/drop", pattern = "*.csv", settle = "100ms" },
  run = function(ctx) ctx.log.info("importing %s", ctx.trigger.file); return { file = ctx.trigger.file } end }
"#,
    );
    p.script(
        "fails",
        r#"return {
  run = function(ctx)
    ctx.log.info("checking the orders table")
    error("table orders does not exist")
  end,
}
"#,
    );
    p.script(
        "nightly",
        r#"return { description = "Backs up the store every night", schedule = "30 2 * * *",
  run = function(ctx) end }
"#,
    );
    p.script("broken", "return { run = function(ctx) end\n");
    p
}

#[test]
fn the_embedded_ui_stays_under_its_budget() {
    let total = ferry::api::ui::total_size();
    assert!(
        total < ferry::api::ui::MAX_UI_BYTES && ferry::api::ui::MAX_UI_BYTES == 200 * 1024,
        "the UI is {total} bytes, over its budget of {} bytes",
        ferry::api::ui::MAX_UI_BYTES
    );
    for a in ferry::api::ui::ASSETS {
        assert!(!a.body.is_empty(), "{} is empty", a.name);
    }
}

/// The body of the embedded asset `name`.
fn asset(name: &str) -> &'static str {
    ferry::api::ui::ASSETS
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no asset {name}"))
        .body
}

/// The quoted routes (`"POST /api/v1/..."`) in a text.
fn quoted_routes(text: &str) -> impl Iterator<Item = &str> {
    let methods = ["GET", "POST", "PUT", "DELETE"];
    text.split('"').filter(move |q| {
        q.split_once(' ')
            .is_some_and(|(m, p)| methods.contains(&m) && p.starts_with("/api/"))
    })
}

#[test]
fn ui_scopes_match_the_api_routes() {
    let js = asset("scope.js");
    let (_, map) = js
        .split_once("export const NEEDS = {")
        .expect("scope.js defines NEEDS");
    let (map, _) = map.split_once("};").expect("NEEDS ends");
    let lines: Vec<&str> = map.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut needs = std::collections::BTreeMap::new();
    for line in &lines {
        let parts: Vec<&str> = line.split('"').collect();
        let [_, route, ": ", scope, ","] = parts[..] else {
            panic!("not `\"METHOD /path\": \"scope\",`: {line:?}")
        };
        needs.insert(route, scope);
    }
    assert_eq!(needs.len(), lines.len(), "one route a line: {map}");
    // Each scope is the one the API's table gives the route.
    for (route, scope) in &needs {
        let (method, path) = route.split_once(' ').unwrap();
        let api = ferry::api::auth::ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{route} is not in api::auth::ROUTES"));
        assert_eq!(
            api.scope.map(|s| s.as_str()),
            Some(*scope),
            "scope.js says {route} needs {scope}; api::auth::ROUTES disagrees"
        );
    }
    // The routes the other modules lock their buttons by are exactly those of the map.
    let used: std::collections::BTreeSet<&str> = ferry::api::ui::ASSETS
        .iter()
        .filter(|a| a.name.ends_with(".js") && a.name != "scope.js")
        .flat_map(|a| quoted_routes(a.body))
        .collect();
    let mapped: std::collections::BTreeSet<&str> = needs.keys().copied().collect();
    assert_eq!(
        used, mapped,
        "routes locked by the UI vs the routes of NEEDS"
    );
    // And they are the routes it calls: no action reaches the API but through `call(ROUTE)`
    // (`post` is left to signing in and out).
    for a in ferry::api::ui::ASSETS.iter().filter(|a| a.name != "api.js") {
        for (at, _) in a.body.match_indices("post(") {
            let rest = &a.body[at + "post(".len()..];
            assert!(
                rest.starts_with("\"/ui/"),
                "{} posts to the API without call(): {}",
                a.name,
                rest.lines().next().unwrap_or_default()
            );
        }
        assert!(
            !a.body.contains("del("),
            "{} deletes without call()",
            a.name
        );
    }
}

#[test]
fn pages_and_assets_are_served_and_unknown_ones_refused() {
    let p = jobs_project("");
    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    for path in ["/", "/jobs", "/jobs/export", "/runs", "/runs/1", "/login"] {
        let r = http.get(format!("{}{path}", d.url)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(r.text().unwrap().contains("/ui/app.js"), "{path}");
    }
    let r = http.get(format!("{}/ui/app.css", d.url)).send().unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let r = http.get(format!("{}/ui/nope.js", d.url)).send().unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    // Without a token there is nothing to sign in to.
    let r = http
        .post(format!("{}/ui/login", d.url))
        .json(&json!({ "token": "x" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // A state-changing request from another site is refused even without a token.
    let r = http
        .post(format!("{}/api/v1/jobs/nightly/runs", d.url))
        .header("Origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_person_runs_and_follows_jobs_in_the_browser() {
    let p = jobs_project(
        "[limits]\nkill_grace = \"1s\"\n[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\n",
    );
    let d = Daemon::start(&p);
    let driver = Driver::start();
    let csv = p.write("upload/orders-2026.csv", "id,total\n7,1.25\n");
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver).await;
        let base = d.url.clone();

        // Overview: counts, upcoming schedule, the job that does not load.
        c.goto(&format!("{base}/")).await.unwrap();
        wait_text(&c, "h1", "Overview").await;
        wait_text(&c, "#h-upcoming + *", "nightly").await;
        wait_text(&c, "main", "Jobs whose script does not load").await;
        wait_text(&c, "main", "broken").await;
        shot(&c, "overview").await;

        // Jobs, then a job by its link.
        click(&c, "nav a[href='/jobs']").await;
        wait_text(&c, "table", "Imports dropped CSV files").await;
        wait_text(&c, "table", "every day at 02:30").await;
        shot(&c, "jobs").await;
        click(&c, "a[href='/jobs/export']").await;
        wait_el(&c, "#params-form").await;
        wait_button(&c, "#pause", None).await;
        wait_text(&c, "pre.code", "ctx.artifact").await;
        shot(&c, "job").await;

        // A bad value: the API's error shows beside its field.
        let limit = wait_el(&c, "#param-limit").await;
        limit.send_keys("lots").await.unwrap();
        click(&c, "#run-now").await;
        let err = wait_text(&c, "#param-limit-error", "expected integer").await;
        assert!(err.contains("lots"), "{err}");
        assert_eq!(
            limit.attr("aria-invalid").await.unwrap().as_deref(),
            Some("true")
        );
        shot(&c, "job-param-error").await;
        limit.clear().await.unwrap();
        limit.send_keys("2").await.unwrap();
        click(&c, "#run-now").await;

        // The run's page follows its log as it is written.
        let id = run_id_shown(&c).await;
        wait_text(&c, "#logs", "exporting 2 rows since 2026-01-01").await;
        wait_text(&c, "#state", "running").await;
        let shown = c
            .find(Locator::Css("#logs"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!shown.contains("second half"), "{shown}");
        std::fs::write(p.at("data/gate/go"), "").unwrap();
        wait_text(&c, "#logs", "second half written").await;
        wait_text(&c, "#state", "succeeded").await;
        wait_text(&c, "#summary", "\"rows\": 2").await;
        wait_text(&c, "#progress-text", "2 of 2").await;
        // Without auth nobody is named, and every action is offered.
        wait_button(&c, "#rerun", None).await;
        wait_button(&c, "#delete", None).await;
        let who = wait_el(&c, "#who").await;
        assert!(!who.is_displayed().await.unwrap());
        assert_eq!(who.text().await.unwrap(), "");

        // The artifact's link downloads the run's file, byte for byte.
        let link = wait_el(&c, "#artifacts a").await;
        let href = link.attr("href").await.unwrap().expect("an href");
        assert_eq!(href, format!("/api/v1/runs/{id}/artifacts/orders.csv"));
        let bytes = reqwest::get(format!("{base}{href}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"id,total\n1,9.50\n2,12.00\n");
        shot(&c, "run").await;

        // A long run, cancelled from its page.
        c.goto(&format!("{base}/jobs/slow")).await.unwrap();
        click(&c, "#run-now").await;
        let slow = run_id_shown(&c).await;
        wait_text(&c, "#logs", "working").await;
        click(&c, "#cancel").await;
        wait_text(&c, "#state", "cancelled").await;
        wait_el(&c, "#rerun").await;
        assert_eq!(
            p.show(slow)["state"],
            "cancelled",
            "the history agrees with the page"
        );

        // A file uploaded into a watched job starts its run.
        c.goto(&format!("{base}/jobs/drop")).await.unwrap();
        let input = wait_el(&c, "#upload-file").await;
        input.send_keys(csv.to_str().unwrap()).await.unwrap();
        click(&c, "#upload-button").await;
        run_id_shown(&c).await;
        wait_text(&c, "#state", "succeeded").await;
        wait_text(&c, "#logs", "orders-2026.csv").await;
        wait_text(&c, "main", "orders-2026.csv").await;

        // A failed run shows its error with the script's line.
        c.goto(&format!("{base}/jobs/fails")).await.unwrap();
        click(&c, "#run-now").await;
        run_id_shown(&c).await;
        wait_text(&c, "#state", "failed").await;
        wait_text(&c, "#error-message", "fails.lua:4").await;
        wait_text(&c, "#error-message", "table orders does not exist").await;
        shot(&c, "run-failed").await;

        // Runs, filtered by state, with the filters in the URL.
        c.goto(&format!("{base}/runs?state=failed")).await.unwrap();
        wait_text(&c, "table", "fails").await;
        let t = c
            .find(Locator::Css("table"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!t.contains("export"), "{t}");
        c.goto(&format!("{base}/runs")).await.unwrap();
        wait_text(&c, ".pager", "4 runs").await;
        shot(&c, "runs").await;

        // Back on the overview, the failure is listed first.
        c.goto(&format!("{base}/#/")).await.unwrap();
        wait_text(&c, "#h-failures + *", "fails").await;

        // A narrow phone screen: nothing wider than the screen.
        c.set_window_size(360, 800).await.unwrap();
        for (path, name) in [
            ("/", "overview-360"),
            (&format!("/runs/{id}") as &str, "run-360"),
        ] {
            fits_the_screen(&c, &format!("{base}{path}"), name).await;
        }
        c.close().await.unwrap();
    });
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn signing_in_with_a_token_keeps_it_in_an_http_only_cookie() {
    let p = jobs_project(&format!("[api]\ntoken = \"{TOKEN}\"\n"));
    let d = Daemon::start(&p);
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver).await;
        let base = d.url.clone();
        c.goto(&format!("{base}/runs")).await.unwrap();
        // Not signed in: the login page, which remembers where the person was going.
        wait_el(&c, "#token").await;
        assert!(
            c.current_url()
                .await
                .unwrap()
                .as_str()
                .contains("/login?next=")
        );
        shot(&c, "login").await;
        let token = wait_el(&c, "#token").await;
        token
            .send_keys("wrong-token-0123456789abcdef")
            .await
            .unwrap();
        click(&c, ".login button[type=submit]").await;
        wait_text(&c, "#login-error", "Wrong token").await;
        assert!(c.get_all_cookies().await.unwrap().is_empty());
        token.clear().await.unwrap();
        token.send_keys(TOKEN).await.unwrap();
        click(&c, ".login button[type=submit]").await;
        wait_text(&c, "h1", "Runs").await;
        assert_eq!(c.current_url().await.unwrap().path(), "/runs");

        // The token is in an HttpOnly, SameSite=Strict cookie: no script sees it.
        let cookies = c.get_all_cookies().await.unwrap();
        let session = cookies
            .iter()
            .find(|k| k.name() == "ferry_token")
            .expect("a session cookie");
        assert_eq!(session.http_only(), Some(true));
        assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
        let csrf = cookies
            .iter()
            .find(|k| k.name() == "ferry_csrf")
            .expect("a CSRF cookie")
            .value()
            .to_string();
        let seen = c
            .execute(
                "return document.cookie + document.documentElement.outerHTML",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            !seen.as_str().unwrap().contains(TOKEN),
            "the page can read the token"
        );

        // The UI acts with the cookie (and its CSRF header).
        c.goto(&format!("{base}/jobs/nightly")).await.unwrap();
        click(&c, "#run-now").await;
        run_id_shown(&c).await;
        wait_text(&c, "#state", "succeeded").await;
        shot(&c, "run-signed-in").await;

        // The cookie alone does not change anything: the CSRF header must match; the bearer
        // header keeps working without either.
        let http = reqwest::Client::new();
        let cookie = format!("ferry_token={TOKEN}; ferry_csrf={csrf}");
        let url = format!("{base}/api/v1/jobs/nightly/runs");
        let r = http
            .post(&url)
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .post(&url)
            .header("Cookie", &cookie)
            .header("X-Ferry-CSRF", "not-the-value")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .post(&url)
            .header("Cookie", &cookie)
            .header("X-Ferry-CSRF", &csrf)
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .post(&url)
            .header("Cookie", &cookie)
            .header("X-Ferry-CSRF", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .get(format!("{base}/api/v1/runs"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http.post(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .get(format!("{base}/api/v1/runs"))
            .header("Cookie", "ferry_token=wrong-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // A malformed login body is refused with the reason.
        let r = http
            .post(format!("{base}/ui/login"))
            .body("{\"tokn\": 1}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Signing out clears the cookie: the next page asks for the token again.
        c.goto(&format!("{base}/")).await.unwrap();
        click(&c, "#logout").await;
        wait_el(&c, "#token").await;
        assert!(
            !c.get_all_cookies()
                .await
                .unwrap()
                .iter()
                .any(|k| k.name() == "ferry_token")
        );
        c.close().await.unwrap();
    });
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_ui_offers_each_session_what_its_token_may_do() {
    let p = jobs_project(&format!(
        "[api]\ntoken = \"{TOKEN}\"\n[daemon]\nshutdown_grace = \"500ms\"\n"
    ));
    let tokens: Vec<String> = [("ci", "read"), ("runner", "run")]
        .iter()
        .map(|(name, scope)| {
            let r = p.ferry(&["tokens", "create", name, "--scope", scope]);
            assert_eq!(r.code, 0, "{}", r.all());
            r.stdout.trim().to_string()
        })
        .collect();
    let (reader, runner) = (&tokens[0], &tokens[1]);
    let d = Daemon::start(&p);
    // A run that waits for its time, to show a Cancel button.
    let (status, v) = common::api::Api::new(&d).post(
        "/api/v1/jobs/fails/runs",
        json!({ "at": "2099-01-01T00:00:00Z" }),
    );
    assert_eq!(status, 201, "{v}");
    let later = v["id"].as_i64().expect("a run id");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver).await;
        let base = d.url.clone();

        // run: runs a job from the UI, may not delete its run.
        sign_in(&c, &base, runner, "runner · run").await;
        c.goto(&format!("{base}/jobs/nightly")).await.unwrap();
        wait_button(&c, "#pause", None).await;
        click(&c, "#run-now").await;
        let done = run_id_shown(&c).await;
        wait_text(&c, "#state", "succeeded").await;
        wait_button(&c, "#rerun", None).await;
        wait_button(&c, "#delete", Some(("admin", "run"))).await;
        sign_out(&c).await;

        // read: every action is disabled with the reason, and the API still refuses.
        sign_in(&c, &base, reader, "ci · read").await;
        c.goto(&format!("{base}/jobs/drop")).await.unwrap();
        for css in ["#run-now", "#run-at-button", "#pause", "#upload-button"] {
            wait_button(&c, css, Some(("run", "read"))).await;
        }
        shot(&c, "job-read").await;
        c.goto(&format!("{base}/runs/{done}")).await.unwrap();
        wait_button(&c, "#rerun", Some(("run", "read"))).await;
        wait_button(&c, "#delete", Some(("admin", "read"))).await;
        shot(&c, "run-read").await;
        c.goto(&format!("{base}/runs/{later}")).await.unwrap();
        wait_button(&c, "#cancel", Some(("run", "read"))).await;
        // The header and the notes fit a phone.
        c.set_window_size(360, 800).await.unwrap();
        fits_the_screen(&c, &format!("{base}/jobs/drop"), "job-read-360").await;
        fits_the_screen(&c, &format!("{base}/runs/{done}"), "run-read-360").await;
        c.set_window_size(1200, 1000).await.unwrap();
        // The page's own request past a disabled button (cookie and CSRF header as the UI
        // sends them) is still refused by the API.
        let refused = c
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 const m = document.cookie.match(/ferry_csrf=([^;]*)/); \
                 fetch('/api/v1/runs/' + arguments[0] + '/cancel', { method: 'POST', \
                   headers: { 'X-Ferry-CSRF': m ? decodeURIComponent(m[1]) : '' } }) \
                   .then((r) => r.json().then((b) => done([r.status, b]))) \
                   .catch((e) => done([0, String(e)]));",
                vec![json!(later)],
            )
            .await
            .unwrap();
        assert_eq!(refused[0], 403, "{refused}");
        let said = refused[1]["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains("`run` scope"), "{refused}");
        sign_out(&c).await;

        // admin (the config token): everything is offered.
        sign_in(&c, &base, TOKEN, "config · admin").await;
        c.goto(&format!("{base}/jobs/drop")).await.unwrap();
        for css in ["#run-now", "#run-at-button", "#pause", "#upload-button"] {
            wait_button(&c, css, None).await;
        }
        c.goto(&format!("{base}/runs/{later}")).await.unwrap();
        wait_button(&c, "#cancel", None).await;
        click(&c, "#cancel").await;
        wait_text(&c, "#state", "cancelled").await;
        c.goto(&format!("{base}/runs/{done}")).await.unwrap();
        wait_button(&c, "#rerun", None).await;
        wait_button(&c, "#delete", None).await;
        click(&c, "#rerun").await;
        run_shown_besides(&c, Some(done)).await;
        wait_text(&c, "#state", "succeeded").await;
        c.goto(&format!("{base}/runs/{done}")).await.unwrap();
        click(&c, "#delete").await;
        c.accept_alert().await.expect("the delete is confirmed");
        wait_text(&c, "h1", "Runs").await;
        let gone = p.ferry(&["runs", "show", &done.to_string()]);
        assert!(gone.stderr.contains("does not exist"), "{}", gone.all());
        c.close().await.unwrap();
    });
    assert_eq!(d.stop(), Some(0));
}
