-- plugins/import.lua: import csv, json, ndjson, xlsx or sql into a SQLite table (seeds 000, 001,
-- 002), from a store path or from the file that triggered the run (watched folder or upload).
--
--   local import = require "import"
--   import.run(ctx, {
--     db = "data/shop.db", table = "orders",
--     file = nil,                 -- path of the input; default: ctx.trigger.file
--     store = nil,                -- store of `file` (default: the file's own folder)
--     format = nil,               -- default: from the file extension
--     header = true,              -- CSV: the first line is a header (never imported as data)
--     names = nil,                -- CSV without header: the column names
--     types = { id = "integer", amount = "float" },  -- how to type values (text otherwise)
--     create = true,              -- create the table from the input's columns when missing, typed
--                                 -- from `types` / `column_types`, else (CSV, XLSX) inferred from
--                                 -- the first `sample` rows (infer = false: TEXT); the DDL is logged
--     on_conflict = "fail",       -- fail | skip | replace
--     on_error = "fast_fail",     -- fast_fail | continue (bad rows skipped, counted, reported)
--   })
--   --> { inserted = n, skipped = n, bad_rows = n, table = "orders", file = "..." }
--
-- One file is all-or-nothing: its rows go in one transaction, rolled back on any error.

local M = {}

local EXT = { csv = "csv", tsv = "csv", json = "json", ndjson = "ndjson", jsonl = "ndjson", xlsx = "xlsx", sql = "sql" }

local function split(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then return ".", path end
  return dir, base
end

--- SQLite column types for a source's columns from a sample of its rows (default 1000):
--- INTEGER when every non-empty value is an integer, REAL when every one is a number, TEXT
--- otherwise. Only the table's declared types come from it: values keep being read as they
--- are, and SQLite's column affinity stores numeric text as numbers, so a later row that does
--- not fit is stored as text rather than failing the import.
function M.infer(src, sample)
  local kinds, seen = {}, {}
  local rows = src:read(sample or 1000) or {}
  local columns = src:columns()
  src:close()
  for _, row in ipairs(rows) do
    for _, c in ipairs(columns) do
      local v = row[c]
      if v ~= nil and v ~= "" then
        seen[c] = true
        local kind
        if math.type(v) == "integer" or (type(v) == "string" and v:match("^%s*[-+]?%d+%s*$") and #v < 19) then
          kind = "INTEGER"
        elseif type(v) == "number" or (type(v) == "string" and tonumber(v) and not v:match("^%s*0[xX]")) then
          kind = "REAL"
        else
          kind = "TEXT"
        end
        local before = kinds[c]
        if before == nil or before == kind then
          kinds[c] = kind
        elseif (before == "INTEGER" and kind == "REAL") or (before == "REAL" and kind == "INTEGER") then
          kinds[c] = "REAL"
        else
          kinds[c] = "TEXT"
        end
      end
    end
  end
  local out = {}
  for _, c in ipairs(columns) do
    if seen[c] then out[c] = kinds[c] end
  end
  return out
end

function M.run(ctx, o)
  local file = o.file or (ctx.trigger and (ctx.trigger.file))
  if not file then error("import: give `file`, or run the job from a watched folder or an upload", 2) end
  local store, path
  if o.store then
    store, path = ferry.store(o.store, o.store_opts), file
  else
    local dir, base = split(file)
    store, path = ferry.store(dir), base
  end
  local format = o.format or EXT[(path:match("%.([%w]+)$") or ""):lower()]
  if not format then
    error("import: cannot tell the format of " .. file .. "; give `format` (csv, json, ndjson, xlsx or sql)", 2)
  end
  local policy = o.on_error or "fast_fail"
  if policy ~= "fast_fail" and policy ~= "continue" then
    error("import: `on_error` must be \"fast_fail\" or \"continue\", got " .. tostring(policy), 2)
  end
  local db = ferry.sqlite.open(o.db)
  if format == "sql" then
    local result = db:run(ferry.sql.reader(store:open(path)))
    ctx.log.info("ran %d statements of %s (%d changes)", result.statements, file, result.changes)
    return { statements = result.statements, changes = result.changes, file = file }
  end
  if not o.table then error("import: give `table`", 2) end
  local ropts = { types = o.types, name = file, on_error = policy == "continue" and "continue" or nil,
                  columns = o.columns, exclude = o.exclude }
  if format == "csv" then
    ropts.header = o.header
    ropts.names = o.names
    ropts.delimiter = o.delimiter or (path:lower():match("%.tsv$") and "\t" or nil)
  end
  local src = ferry[format].reader(store:open(path), ropts)
  local exists = false
  for _ in db:query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", { o.table }):rows() do exists = true end
  if not exists and o.create ~= false then
    -- Column types come from `types` (or `column_types`, SQLite type names); text formats
    -- without a declared type give TEXT, JSON/NDJSON keep each value's own type (no affinity).
    local sql_type = { integer = "INTEGER", float = "REAL", boolean = "INTEGER", bytes = "BLOB", timestamp = "INTEGER", text = "TEXT" }
    local inferred = {}
    if (format == "csv" or format == "xlsx") and o.infer ~= false then
      -- A sample that does not parse infers nothing: the import itself reports the bad row.
      local ok, got = pcall(function()
        return M.infer(ferry[format].reader(store:open(path), { name = file, header = ropts.header, names = ropts.names,
          delimiter = ropts.delimiter, columns = o.columns, exclude = o.exclude }), o.sample)
      end)
      if ok then inferred = got end
    end
    local cols = {}
    for _, c in ipairs(src:columns()) do
      local declared = (o.column_types and o.column_types[c])
        or (type(o.types) == "table" and sql_type[o.types[c] or ""])
        or (type(o.types) == "string" and sql_type[o.types])
        or inferred[c]
        or ((format == "csv" or format == "xlsx") and "TEXT" or "")
      cols[#cols + 1] = ('"%s" %s'):format(c:gsub('"', '""'), declared)
    end
    local ddl = ('CREATE TABLE "%s" (%s)'):format(o.table:gsub('"', '""'), table.concat(cols, ", "))
    db:exec(ddl)
    ctx.log.info("created table: %s", ddl)
  end
  local inserted, skipped = db:transaction(function(tx)
    return tx:insert(o.table, src, { on_conflict = o.on_conflict or "fail", create = o.create ~= false })
  end)
  local bad = src:errors()
  local bad_count = bad and bad.count or 0
  ctx.log.info("imported %d rows of %s into %s (%d skipped as conflicts, %d bad rows)",
    inserted, file, o.table, skipped, bad_count)
  return { inserted = inserted, skipped = skipped, bad_rows = bad_count, table = o.table, file = file }
end

return M
