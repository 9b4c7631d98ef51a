// One job: its triggers, pause and resume, its params as a form (Run now / Run at), a file
// upload for watched jobs, its script (highlighted) and its runs.

import { call, get, getText, query } from "./api.js";
import { h, errorBox, table, toast, RUN_HEAD, runRow, pager } from "./dom.js";
import { highlight } from "./lua.js";
import { triggers, strip } from "./jobs.js";
import { lock } from "./scope.js";

// The routes of the job's actions (see NEEDS in scope.js).
const TRIGGER = "POST /api/v1/jobs/{name}/runs";
const UPLOAD = "POST /api/v1/jobs/{name}/upload";

// The input for a param of a type. Numbers are typed as text so the API, which knows the
// types, says what is wrong with a value.
function input(name, p) {
  const id = `param-${name}`;
  const common = { id, name, "aria-describedby": `${id}-help ${id}-error` };
  const def = p.default === null || p.default === undefined ? "" : typeof p.default === "string" ? p.default : JSON.stringify(p.default);
  switch (p.type) {
    case "boolean":
      return h("select", common, h("option", { value: "" }, def ? `default (${def})` : "—"),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    case "array": case "object":
      return h("textarea", { ...common, rows: 3, placeholder: def || (p.type === "array" ? "[...]" : "{...}"), spellcheck: "false" });
    case "integer": case "number":
      return h("input", { ...common, type: "text", inputmode: p.type === "integer" ? "numeric" : "decimal", placeholder: def, autocomplete: "off" });
    default:
      return h("input", { ...common, type: p.secret || /pass|secret|token/i.test(name) ? "password" : "text", placeholder: def, autocomplete: "off" });
  }
}

function paramsForm(j, navigate, session) {
  const names = Object.keys(j.params);
  const fields = names.map((name) => {
    const p = j.params[name];
    const typeText = p.type === "array" && p.items ? `array of ${p.items}` : p.type;
    const field = h("div", { class: "field", "data-param": name },
      h("label", { for: `param-${name}` }, h("span", { class: "strong" }, name), " ",
        h("span", { class: "muted" }, typeText), p.required && (p.default === null || p.default === undefined) ? h("span", { class: "req", title: "required" }, " *") : null),
      input(name, p),
      h("div", { class: "help muted", id: `param-${name}-help` }, p.description || "",
        p.default !== null && p.default !== undefined ? ` (default ${JSON.stringify(p.default)})` : ""),
      h("div", { class: "field-error", id: `param-${name}-error`, role: "alert" }));
    return field;
  });
  const at = h("input", { type: "datetime-local", id: "run-at", name: "at", step: "1", "aria-describedby": "run-at-error" });
  const formError = h("div", { class: "field-error", id: "form-error", role: "alert" });
  const atError = h("div", { class: "field-error", id: "run-at-error", role: "alert" });
  const now = h("button", { type: "submit", class: "primary", id: "run-now", value: "now" }, "Run now");
  const later = h("button", { type: "submit", id: "run-at-button", value: "at" }, "Run at");
  const form = h("form", { id: "params-form", novalidate: true }, fields,
    h("div", { class: "actions" }, now,
      h("span", { class: "at" }, h("label", { for: "run-at" }, "or at "), at, later),
      lock(session, TRIGGER, now, later)),
    atError, formError);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const which = e.submitter ? e.submitter.value : "now";
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const params = {};
    for (const name of names) {
      const el = form.elements.namedItem(name);
      if (el && el.value !== "") params[name] = el.value;
    }
    const body = { params };
    if (which === "at") {
      if (!at.value) { atError.textContent = "Choose a date and time."; at.focus(); return; }
      body.at = new Date(at.value).toISOString();
    }
    try {
      const r = await call(TRIGGER, j, body);
      toast(`Run #${r.id} ${r.state}`);
      navigate(`/runs/${r.id}`);
    } catch (x) {
      const target = x.field === "at" ? at : x.field ? form.elements.namedItem(x.field) : null;
      if (target) {
        target.setAttribute("aria-invalid", "true");
        (x.field === "at" ? atError : document.getElementById(`param-${x.field}-error`)).textContent = x.message;
        target.focus();
      } else {
        formError.textContent = x.message;
      }
    }
  });
  return form;
}

function uploadForm(j, navigate, session) {
  const file = h("input", { type: "file", id: "upload-file", name: "file", required: true });
  const err = h("div", { class: "field-error", id: "upload-error", role: "alert" });
  const send = h("button", { type: "submit", class: "primary", id: "upload-button" }, "Upload");
  const form = h("form", { id: "upload-form" },
    h("label", { for: "upload-file" }, "Drop a file into ", h("code", {}, j.watch.path), " and run the job on it"),
    h("div", { class: "actions" }, file, send, lock(session, UPLOAD, send)), err);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    if (!file.files.length) { err.textContent = "Choose a file first."; return; }
    const data = new FormData();
    data.append("file", file.files[0]);
    try {
      const r = await call(UPLOAD, j, data);
      toast(`Uploaded; run #${r.id}`);
      navigate(`/runs/${r.id}`);
    } catch (x) { err.textContent = x.message; }
  });
  return form;
}

export async function job({ main, args, query: q, navigate, session }) {
  const name = args[0];
  const path = `/api/v1/jobs/${encodeURIComponent(name)}`;
  const j = await get(path);
  const pauseRoute = j.paused ? "POST /api/v1/jobs/{name}/resume" : "POST /api/v1/jobs/{name}/pause";
  const pauseButton = h("button", { type: "button", id: "pause", onclick: async () => {
    try {
      await call(pauseRoute, j);
      toast(j.paused ? "Resumed" : "Paused");
      navigate(location.pathname + location.search, true);
    } catch (x) { toast(x.message, true); }
  } }, j.paused ? "Resume" : "Pause");
  main.append(h("div", { class: "title" },
    h("h1", {}, j.name), j.paused ? h("span", { class: "badge s-paused", id: "paused" }, `paused since ${new Date(j.paused_since).toLocaleString()}`) : null,
    h("span", { class: "spacer" }), pauseButton, lock(session, pauseRoute, pauseButton)));
  if (j.description) main.append(h("p", { class: "lead" }, j.description));
  if (j.error) main.append(h("section", { class: "card" }, h("h2", {}, j.loaded ? "The newest version does not load (the previous one stays active)" : "The script does not load"), h("pre", { class: "error" }, j.error)));
  main.append(h("section", { class: "card" }, h("h2", {}, "Triggers"), triggers(j),
    h("dl", { class: "facts" },
      h("dt", {}, "File"), h("dd", {}, h("code", {}, j.file)),
      j.timeout ? [h("dt", {}, "Time limit"), h("dd", {}, j.timeout)] : null,
      j.retries !== null ? [h("dt", {}, "Retries"), h("dd", {}, String(j.retries))] : null,
      j.overlap ? [h("dt", {}, "Overlap"), h("dd", {}, j.overlap)] : null,
      h("dt", {}, "Recent runs"), h("dd", {}, strip(j.recent_runs)))));
  if (j.loaded) {
    main.append(h("section", { class: "card" }, h("h2", {}, "Run"),
      Object.keys(j.params).length ? null : h("p", { class: "muted" }, "This job declares no params."),
      paramsForm(j, navigate, session)));
    if (j.watch) main.append(h("section", { class: "card" }, h("h2", {}, "Upload a file"), uploadForm(j, navigate, session)));
  }
  const runsBox = h("div", {});
  main.append(h("section", { class: "card" }, h("h2", {}, "Runs"), runsBox));
  const page = Math.max(1, parseInt(q.get("page") || "1", 10) || 1);
  const sourceBox = h("pre", { class: "code", tabindex: "0", "aria-label": "script source" });
  main.append(h("section", { class: "card" }, h("h2", {}, "Script"), sourceBox));
  const [list, source] = await Promise.allSettled([
    get(`/api/v1/runs${query({ job: name, page, page_size: 10 })}`),
    getText(`${path}/source`),
  ]);
  if (list.status === "fulfilled") {
    const l = list.value;
    runsBox.append(table(RUN_HEAD, l.items.map(runRow), "No runs yet."));
    if (l.total > l.page_size) runsBox.append(pager(l.page, l.page_size, l.total, (p) => `/jobs/${encodeURIComponent(name)}?page=${p}`));
    runsBox.append(h("p", {}, h("a", { href: `/runs?job=${encodeURIComponent(name)}` }, "Filter these runs →")));
  } else runsBox.append(errorBox(list.reason));
  if (source.status === "fulfilled") sourceBox.append(highlight(source.value));
  else sourceBox.replaceWith(errorBox(source.reason));
}
