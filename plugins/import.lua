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
--                                 -- from `types` / `column_types`; the DDL is logged
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
    local cols = {}
    for _, c in ipairs(src:columns()) do
      local declared = (o.column_types and o.column_types[c])
        or (type(o.types) == "table" and sql_type[o.types[c] or ""])
        or (type(o.types) == "string" and sql_type[o.types])
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
