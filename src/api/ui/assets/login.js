// The login page: the token goes to POST /ui/login once, which answers with an HttpOnly
// cookie; the page never keeps it.

import { post } from "./api.js";
import { h } from "./dom.js";

export async function login({ main, query, navigate, session, setSignedIn }) {
  const next = query.get("next") || "/";
  const safeNext = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  if (session.auth !== "token") {
    main.append(h("p", {}, "This ferry needs no sign-in. ", h("a", { href: "/" }, "Go to the overview")));
    return;
  }
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const err = h("p", { class: "error", id: "login-error", role: "alert", hidden: true });
  const form = h("form", { class: "login card", onsubmit: async (e) => {
    e.preventDefault();
    err.hidden = true;
    try {
      await post("/ui/login", { token: input.value });
      input.value = "";
      await setSignedIn();
      navigate(safeNext, true);
    } catch (x) {
      err.textContent = x.status === 401 ? "Wrong token." : x.message;
      err.hidden = false;
      input.select();
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "Give the API token of this ferry ([api] token in ferry.toml, or FERRY_TOKEN)."),
  h("label", { for: "token" }, "Token"), input, err,
  h("button", { type: "submit", class: "primary" }, "Sign in"));
  main.append(form);
  input.focus();
}
