// A small Lua highlighter: comments, strings, numbers, keywords and the host's names, as
// spans of text (nothing is parsed as HTML).

const KEYWORDS = new Set(("and break do else elseif end false for function goto if in local nil not or " +
  "repeat return then true until while").split(" "));
const HOST = new Set(["ferry", "ctx", "require", "print", "pairs", "ipairs", "string", "table", "math", "os", "tostring", "tonumber", "type", "error", "pcall", "assert"]);

const TOKEN = /(--\[(=*)\[[\s\S]*?\]\2\]|--[^\n]*)|(\[(=*)\[[\s\S]*?\]\4\]|"(?:\\[\s\S]|[^"\\\n])*"?|'(?:\\[\s\S]|[^'\\\n])*'?)|(\b0[xX][0-9a-fA-F.]+(?:[pP][+-]?\d+)?|\b\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)/g;

export function highlight(source) {
  const out = document.createDocumentFragment();
  let last = 0;
  const span = (cls, text) => {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    out.append(s);
  };
  for (const m of source.matchAll(TOKEN)) {
    if (m.index > last) out.append(source.slice(last, m.index));
    const text = m[0];
    if (m[1]) span("c", text);
    else if (m[3]) span("s", text);
    else if (m[5]) span("n", text);
    else if (KEYWORDS.has(text)) span("k", text);
    else if (HOST.has(text)) span("b", text);
    else out.append(text);
    last = m.index + text.length;
  }
  if (last < source.length) out.append(source.slice(last));
  return out;
}
