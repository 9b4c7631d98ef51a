// The jobs: name, description, triggers in words, last run, a strip of recent run states.

import { get } from "./api.js";
import { h, badge, local, utc, relative, table } from "./dom.js";

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MACROS = { "@yearly": "every year on 1 January at 00:00", "@annually": "every year on 1 January at 00:00",
  "@monthly": "every month on the 1st at 00:00", "@weekly": "every Sunday at 00:00",
  "@daily": "every day at 00:00", "@midnight": "every day at 00:00", "@hourly": "every hour" };

// A cron expression in words, for the common shapes; others are shown as they are written.
export function cronWords(expr) {
  const e = expr.trim();
  if (MACROS[e]) return MACROS[e];
  let f = e.split(/\s+/);
  let sec = null;
  if (f.length === 6) { sec = f[0]; f = f.slice(1); }
  if (f.length !== 5) return `cron ${e}`;
  const [min, hour, dom, mon, dow] = f;
  const num = (x) => /^\d+$/.test(x);
  const step = (x) => (x.match(/^\*\/(\d+)$/) || [])[1];
  const secText = sec && sec !== "0" ? (step(sec) ? `every ${step(sec)} seconds, ` : sec === "*" ? "every second, " : null) : "";
  if (secText === null) return `cron ${e}`;
  const anyDay = dom === "*" && mon === "*";
  if (anyDay && dow === "*") {
    if (min === "*" && hour === "*") return secText ? secText.replace(/, $/, "") : "every minute";
    if (step(min) && hour === "*") return `${secText}every ${step(min)} minutes`;
    if (num(min) && hour === "*") return `${secText}every hour at minute ${min}`;
    if (num(min) && step(hour)) return `${secText}every ${step(hour)} hours at minute ${min}`;
  }
  if (num(min) && num(hour)) {
    const at = `at ${hour.padStart(2, "0")}:${min.padStart(2, "0")}`;
    if (anyDay && dow === "*") return `${secText}every day ${at}`;
    if (anyDay && /^[0-7](,[0-7])*$/.test(dow)) return `${secText}every ${dow.split(",").map((d) => DAYS[d % 7]).join(", ")} ${at}`;
    if (anyDay && dow === "1-5") return `${secText}every weekday ${at}`;
    if (num(dom) && mon === "*" && dow === "*") return `${secText}every month on day ${dom} ${at}`;
  }
  return `cron ${e}`;
}

// The triggers of a job in words, as a list of elements.
export function triggers(j) {
  const out = [];
  if (j.schedule) {
    const tz = j.schedule.timezone && j.schedule.timezone !== "UTC" ? ` (${j.schedule.timezone})` : " (UTC)";
    out.push(h("div", { class: "trigger" }, h("span", { class: "tag" }, "schedule"), " ",
      cronWords(j.schedule.cron), tz, " ", h("code", {}, j.schedule.cron),
      j.next_run ? h("div", { class: "muted next" }, "next: ", h("time", { datetime: j.next_run }, local(j.next_run)),
        ` · ${utc(j.next_run)} · ${relative(j.next_run)}`) : null));
  }
  if (j.watch) {
    const w = j.watch;
    out.push(h("div", { class: "trigger" }, h("span", { class: "tag" }, "folder"), " files ",
      h("code", {}, w.pattern || "*"), " dropped into ", h("code", {}, w.path)));
  }
  if (!out.length) out.push(h("span", { class: "muted" }, "on demand"));
  return out;
}

// A strip of run states, oldest on the left.
export function strip(recent) {
  const runs = [...(recent || [])].reverse();
  return h("span", { class: "strip", "aria-label": `last ${runs.length} runs` },
    runs.map((r) => h("a", { href: `/runs/${r.id}`, class: `cell s-${r.state}`, title: `#${r.id} ${r.state}`, "aria-label": `run ${r.id} ${r.state}` })));
}

export async function jobs({ main }) {
  main.append(h("h1", {}, "Jobs"));
  const { items } = await get("/api/v1/jobs");
  const rows = items.map((j) => h("tr", {},
    h("td", {}, h("a", { href: `/jobs/${encodeURIComponent(j.name)}`, class: "strong" }, j.name),
      j.paused ? h("span", { class: "badge s-paused" }, "paused") : null,
      j.error ? h("span", { class: "badge s-failed", title: j.error }, "does not load") : null,
      j.description ? h("div", { class: "muted" }, j.description) : null),
    h("td", {}, triggers(j)),
    h("td", {}, j.last_run ? h("a", { href: `/runs/${j.last_run.id}` }, badge(j.last_run.state)) : badge(null)),
    h("td", {}, strip(j.recent_runs))));
  main.append(table(["Job", "Triggers", "Last run", "Recent runs"], rows,
    "No jobs yet: put a script into scripts/ (ferry new NAME --template export)."));
}
