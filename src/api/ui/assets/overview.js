// The overview: failures of the last 24 hours first, then what runs and waits now, what comes
// next, counts by state and jobs whose script does not load. Re-read when the daemon says
// something changed (at most once a second).

import { get, stream } from "./api.js";
import { h, local, utc, relative, table, RUN_HEAD, runRow } from "./dom.js";

function section(title, id, ...body) {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

function more(total, shown, href) {
  return total > shown ? h("p", {}, h("a", { href }, `All ${total} →`)) : null;
}

function render(o) {
  const frag = [];
  frag.push(h("div", { class: "counts", role: "list", "aria-label": "Runs by state" },
    Object.entries(o.counts).map(([s, n]) => h("a", { role: "listitem", href: `/runs?state=${s}`, class: `count s-${s}` },
      h("span", { class: "n" }, String(n)), h("span", {}, s.replace("_", " "))))));
  const since = encodeURIComponent(o.failures_since);
  frag.push(section("Failed in the last 24 hours", "h-failures",
    table(RUN_HEAD, o.failures.items.map(runRow), "No failures in the last 24 hours."),
    more(o.failures.total, o.failures.items.length, `/runs?state=failed,timed_out,interrupted&since=${since}`)));
  frag.push(section("Running", "h-running",
    table(RUN_HEAD, o.running.items.map(runRow), "Nothing is running."),
    more(o.running.total, o.running.items.length, "/runs?state=running")));
  frag.push(section("Queued", "h-queued",
    table(RUN_HEAD, o.queued.items.map(runRow), "Nothing is waiting."),
    more(o.queued.total, o.queued.items.length, "/runs?state=queued")));
  frag.push(section("Upcoming", "h-upcoming",
    table(["When (local)", "UTC", "Job", "Why"], o.upcoming.map((u) => h("tr", {},
      h("td", {}, h("time", { datetime: u.at }, local(u.at)), h("div", { class: "muted" }, relative(u.at))),
      h("td", {}, utc(u.at)),
      h("td", {}, h("a", { href: `/jobs/${encodeURIComponent(u.job)}` }, u.job), u.paused ? h("span", { class: "badge s-paused" }, "paused") : null),
      h("td", {}, u.kind === "cron" ? ["schedule ", h("code", {}, u.cron)] : h("a", { href: `/runs/${u.run_id}` }, `run #${u.run_id} (at)`)))),
    "Nothing is scheduled.")));
  if (o.broken_jobs.length) {
    frag.push(section("Jobs whose script does not load", "h-broken",
      h("ul", { class: "plain" }, o.broken_jobs.map((j) => h("li", {},
        h("a", { href: `/jobs/${encodeURIComponent(j.name)}`, class: "strong" }, j.name), " ",
        j.loaded ? h("span", { class: "muted" }, "(the previous version stays active)") : h("span", { class: "muted" }, "(not runnable)"),
        h("pre", { class: "error" }, j.error))))));
  }
  return frag;
}

export async function overview({ main }) {
  const body = h("div", { class: "stack" });
  main.append(h("h1", {}, "Overview"), body);
  const load = async () => {
    const o = await get("/api/v1/overview?limit=10");
    body.replaceChildren(...render(o));
  };
  await load();
  let pending = null;
  const close = stream("/api/v1/events?types=run_queued,run_started,run_finished,job_loaded,job_reload_failed,job_removed", {
    run_queued: soon, run_started: soon, run_finished: soon, job_loaded: soon, job_reload_failed: soon, job_removed: soon,
  });
  function soon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load().catch(() => {}); }, 1000);
  }
  // Relative times age; the counts of runs another process closed show up too.
  const timer = setInterval(() => load().catch(() => {}), 30000);
  return () => { close(); clearTimeout(pending); clearInterval(timer); };
}

