// The runs: filtered by job, state and time, paged by the API. The filters live in the URL,
// so a filtered list can be shared.

import { get, query } from "./api.js";
import { h, table, RUN_HEAD, runRow, pager, STATES, pad } from "./dom.js";

// An instant as a datetime-local value (browser zone) and back.
function toInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function runs({ main, query: q, navigate }) {
  main.append(h("h1", {}, "Runs"));
  const f = { job: q.get("job") || "", state: q.get("state") || "", since: q.get("since") || "", until: q.get("until") || "" };
  const page = Math.max(1, parseInt(q.get("page") || "1", 10) || 1);
  const jobSelect = h("select", { id: "f-job", name: "job" }, h("option", { value: "" }, "all jobs"));
  const stateSelect = h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "all states"),
    STATES.map((s) => h("option", { value: s }, s.replace("_", " "))),
    h("option", { value: "failed,timed_out,interrupted" }, "any failure"));
  if (f.state && ![...stateSelect.options].some((o) => o.value === f.state)) stateSelect.append(h("option", { value: f.state }, f.state));
  stateSelect.value = f.state;
  const since = h("input", { type: "datetime-local", id: "f-since", name: "since", value: toInput(f.since) });
  const until = h("input", { type: "datetime-local", id: "f-until", name: "until", value: toInput(f.until) });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    navigate(`/runs${query({ job: jobSelect.value, state: stateSelect.value,
      since: since.value ? new Date(since.value).toISOString() : "", until: until.value ? new Date(until.value).toISOString() : "" })}`);
  } },
  h("label", {}, "Job ", jobSelect), h("label", {}, "State ", stateSelect),
  h("label", {}, "Queued from ", since), h("label", {}, "to ", until),
  h("button", { type: "submit", class: "primary" }, "Filter"),
  h("a", { href: "/runs" }, "Clear"));
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  main.append(form, list);
  const [jobs, l] = await Promise.all([
    get("/api/v1/jobs").catch(() => ({ items: [] })),
    get(`/api/v1/runs${query({ ...f, page, page_size: 25 })}`),
  ]);
  for (const j of jobs.items) jobSelect.append(h("option", { value: j.name }, j.name));
  if (f.job && !jobs.items.some((j) => j.name === f.job)) jobSelect.append(h("option", { value: f.job }, f.job));
  jobSelect.value = f.job;
  list.replaceChildren(table(RUN_HEAD, l.items.map(runRow), "No runs match."),
    pager(l.page, l.page_size, l.total, (p) => `/runs${query({ ...f, page: p })}`));
}
