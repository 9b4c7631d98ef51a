-- plugins/export.lua: export a table or query of SQLite, PostgreSQL or MySQL to csv, json, ndjson,
-- xlsx or sql, optionally zipped, into any store (seeds 000 and 001). Rows stream natively: no Lua
-- value per row (PostgreSQL to plain CSV goes through COPY).
--
--   local export = require "export"
--   export.run(ctx, {
--     db = "data/shop.db",                 -- SQLite file (confined like local stores), or
--                                          -- "postgres://user@host/db", "mysql://user@host/db",
--                                          -- or a name from [databases.NAME] in ferry.toml
--     table = "orders",                    -- or query = "SELECT ...", args = {...}
--     mode = "part", where = "paid = ?", args = { 1 },
--     since = "2026-11-20T10:00:00+05:00", -- and/or until: rows of time_column in [since, until)
--     time_column = "created_at",          -- (epoch seconds); any time form, compared as instants
--     columns = { "id", "customer", "amount", "created_at" },  -- include (or exclude = {...})
--     order_by = { "-created_at", "id" },  -- "-" for descending
--     format = "csv",                      -- csv | json | ndjson | xlsx | sql
--     headers = { "ID", "Customer", "Amount", "Created" },     -- custom CSV/XLSX headers
--     timestamp_columns = { "created_at" },                    -- epoch integers -> RFC 3339
--     zip = "orders.zip",                  -- optional: put the file into this zip
--     store = "data/exports", store_opts = nil,  -- store name or URL (+ inline S3 options)
--     path = "orders.csv",                 -- file name in the store (default TABLE.FORMAT)
--   })
--   --> { rows = n, format = "csv", store = url, path = "orders.zip", file = "orders.csv" }
--
-- Options are checked by a schema: an unknown option or a value outside its choices is an
-- error naming the option, the allowed values and the calling script's line.

local M = {}

local strings = { type = "list", items = "string" }

---@class export.run.Options
---@field db string the SQLite file, a postgres:// or mysql:// URL, or a database named in ferry.toml
---@field table? string
---@field query? string
---@field args? table
---@field mode? "all"|"part"
---@field where? string
---@field since? ferry.Time
---@field until? ferry.Time
---@field until_? ferry.Time another name of `until`
---@field time_column? string
---@field columns? string[]
---@field exclude? string[]
---@field order_by? string[] "-" before a name for descending
---@field format? "csv"|"json"|"ndjson"|"xlsx"|"sql"
---@field headers? string[]
---@field timestamp_columns? string[]
---@field zip? string
---@field store? string default "data/exports"
---@field store_opts? table
---@field path? string
---@field sql_table? string
---@field create_table? boolean

local OPTIONS = ferry.schema("export.run", {
  db = { type = "string", required = true, description = "the SQLite file, a postgres:// or mysql:// URL, or a database named in ferry.toml" },
  table = "string",
  query = "string",
  args = "table",
  mode = { enum = { "all", "part" } },
  where = "string",
  since = "time",
  ["until"] = "time",
  until_ = { type = "time", alias_of = "until" },
  time_column = "string",
  columns = strings,
  exclude = strings,
  order_by = strings,
  format = { enum = { "csv", "json", "ndjson", "xlsx", "sql" }, default = "csv" },
  headers = strings,
  timestamp_columns = strings,
  zip = "string",
  store = { type = "string", default = "data/exports" },
  store_opts = "table",
  path = "string",
  sql_table = "string",
  create_table = "boolean",
})
-- The schema, so a script can check options before it runs (jobs made from a template do).
M.schemas = { run = OPTIONS }

-- The kind of database `db` names: "postgres", "mysql" (a URL, or a name from [databases.NAME])
-- or "sqlite" (a file).
local function db_kind(db)
  local scheme = (db:match("^(%a+)://") or ""):lower()
  if scheme == "" and ferry.databases then scheme = ferry.databases[db] or "" end
  if scheme == "postgres" or scheme == "postgresql" then return "postgres" end
  if scheme == "mysql" or scheme == "mariadb" then return "mysql" end
  return "sqlite"
end
M.db_kind = db_kind

local kind = "sqlite"

local function quote_ident(name)
  if kind == "mysql" then return "`" .. name:gsub("`", "``") .. "`" end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- PostgreSQL numbers its placeholders: the `?` of `where` (outside quotes) become $1, $2, ...
-- after `skip` earlier ones. A `where` that already uses $n is left alone.
local function number_placeholders(sql, skip)
  if sql:find("%$%d") then return sql end
  local out, n, quote = {}, skip, nil
  for ch in sql:gmatch(".") do
    if quote then
      if ch == quote then quote = nil end
      out[#out + 1] = ch
    elseif ch == "'" or ch == '"' then
      quote = ch
      out[#out + 1] = ch
    elseif ch == "?" then
      n = n + 1
      out[#out + 1] = "$" .. n
    else
      out[#out + 1] = ch
    end
  end
  return table.concat(out)
end
M.number_placeholders = number_placeholders

-- The SELECT and its arguments. Raises errors of kind "invalid" located at the script line that
-- called export.run (level 3: build_query <- M.run <- the script).
local function build_query(o)
  local filtered = o.where ~= nil or o.since ~= nil or o["until"] ~= nil
  if o.query then
    if filtered or o.order_by then
      ferry.error("invalid", "export.run: `query` cannot be combined with `where`, `since`, `until` or `order_by`; put them into the query", 3)
    end
    return o.query, o.args or {}
  end
  if not o.table then ferry.error("invalid", "export.run: give `table` or `query`", 3) end
  local mode = o.mode or (filtered and "part" or "all")
  if mode == "part" and not filtered then
    ferry.error("invalid", "export.run: mode \"part\" needs `where` (with `args` for its ? placeholders) or `since`/`until`", 3)
  elseif mode == "all" and filtered then
    ferry.error("invalid", "export.run: mode \"all\" exports every row; drop `where`/`since`/`until` or use mode \"part\"", 3)
  end
  if (o.since or o["until"]) and not o.time_column then
    ferry.error("invalid", "export.run: `since`/`until` need `time_column`, the column holding epoch seconds", 3)
  end
  local sql = "SELECT * FROM " .. quote_ident(o.table)
  local conditions, args = {}, {}
  for i, a in ipairs(o.args or {}) do args[i] = a end
  local pg = kind == "postgres"
  if o.where then conditions[#conditions + 1] = "(" .. (pg and number_placeholders(o.where, 0) or o.where) .. ")" end
  if o.since then
    args[#args + 1] = o.since
    conditions[#conditions + 1] = quote_ident(o.time_column) .. (pg and (" >= $" .. #args) or " >= ?")
  end
  if o["until"] then
    args[#args + 1] = o["until"]
    conditions[#conditions + 1] = quote_ident(o.time_column) .. (pg and (" < $" .. #args) or " < ?")
  end
  if #conditions > 0 then sql = sql .. " WHERE " .. table.concat(conditions, " AND ") end
  if o.order_by and #o.order_by > 0 then
    local keys = {}
    for _, key in ipairs(o.order_by) do
      local desc = key:sub(1, 1) == "-"
      keys[#keys + 1] = quote_ident(desc and key:sub(2) or key) .. (desc and " DESC" or " ASC")
    end
    sql = sql .. " ORDER BY " .. table.concat(keys, ", ")
  end
  return sql, args
end

--- Runs an export and records its result as an artifact of the run.
---@type fun(ctx: ferry.Context, opts: export.run.Options): table
M.run = OPTIONS:wrap(function(ctx, o)
  local format = o.format
  kind = db_kind(o.db)
  local sql, args = build_query(o)
  if kind == "sqlite" then
    -- Opening a missing database would create an empty one: say it is missing instead.
    local db_dir, db_file = o.db:match("^(.*)/([^/]+)$")
    if not ferry.store(db_dir or "."):exists(db_file or o.db) then
      ferry.error("not_found", "export.run: " .. o.db .. " does not exist (the SQLite database to export from)", 2)
    end
  elseif kind == "mysql" and not ferry.mysql then
    ferry.error("unsupported", "export.run: MySQL databases need ferry.mysql, which this ferry does not have", 2)
  end
  local file = o.path or ((o.table or "export") .. "." .. format)
  local store = ferry.store(o.store, o.store_opts)
  local target = o.zip or file
  local out = store:create(target)
  local archive
  local sink_out = out
  if o.zip then
    archive = ferry.zip.writer(out)
    sink_out = archive:create(file)
  end
  local wopts = {
    columns = o.columns,
    exclude = o.exclude,
    timestamp_columns = o.timestamp_columns,
    name = file,
  }
  if o.headers then
    if format == "json" or format == "ndjson" then wopts.keys = o.headers else wopts.header = o.headers end
  end
  if format == "sql" then
    wopts.table = o.sql_table or o.table or "export"
    wopts.create_table = o.create_table
    -- The statements are for a database of the same kind (PostgreSQL reads X'..' as bits).
    wopts.dialect = kind
  end
  local db
  if kind == "postgres" then
    db = ferry.postgres.connect(o.db)
  elseif kind == "mysql" then
    db = ferry.mysql.connect(o.db)
  else
    db = ferry.sqlite.open(o.db)
  end
  local src = db:query(sql, args)
  local sink = ferry[format].writer(sink_out, wopts)
  -- pipe closes the sink, which commits the file (or ends the zip entry).
  local rows = ferry.pipe(src, sink)
  if archive then archive:close() end
  ctx.log.info("exported %d rows of %s as %s to %s", rows, o.table or "the query", format, store:url(target))
  ctx.artifact(store, target)
  return { rows = rows, format = format, store = store:url(), path = target, file = file }
end)

return M
