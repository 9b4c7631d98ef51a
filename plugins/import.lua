-- plugins/import.lua: import csv, json, ndjson, xlsx, sql, or a zip of those, into a SQLite,
-- PostgreSQL or MySQL table (seeds 000, 001, 002), from a store path or from the file that
-- triggered the run (watched folder or upload).
--
--   local import = require "import"
--   import.run(ctx, {
--     db = "data/shop.db", table = "orders",  -- or db = "postgres://user@host/db", "mysql://...",
--                                            -- or a name from [databases.NAME] in ferry.toml
--     file = nil,                 -- path of the input; default: ctx.trigger.file
--     store = nil,                -- store of `file` (default: the file's own folder)
--     format = nil,               -- default: from the file extension (zip: each entry by its own)
--     header = true,              -- CSV: the first line is a header (never imported as data)
--     names = nil,                -- CSV without header: the column names
--     types = { id = "integer", amount = "float" },  -- how to type values (text otherwise)
--     create = true,              -- create the table from the input's columns when missing, typed
--                                 -- from `types` / `column_types`, else (CSV, XLSX) inferred from
--                                 -- the first `sample` rows (infer = false: TEXT); the DDL is logged
--     on_conflict = "fail",       -- fail | skip | overwrite ("replace", upper case also accepted)
--     on_error = "fail_fast",     -- fail_fast | continue (bad rows skipped, counted, reported)
--     reimport = false,           -- import a file again that this database has committed before
--   })
--   --> { inserted = n, skipped = n, bad_rows = n, table = "orders", file = "..." }
--
-- A file is imported into a target once: its SHA-256 is recorded in the target database's
-- `_ferry_imports` table in the same transaction as its rows, and a file already there (a retry
-- after a crash, the same file dropped twice) is skipped with a warning unless `reimport = true`.
--
-- One file is all-or-nothing: the table's creation and its rows go in one transaction, rolled
-- back on any error, so a failed import leaves nothing behind (no empty table either; MySQL,
-- which commits a transaction at CREATE TABLE, gets the table just before the transaction and
-- has it dropped again when the import fails). A zip
-- archive is one file: every entry is imported (each by its own format, into `table`, or into
-- the table named after the entry when `table` is not given) in one transaction.

local M = {}

local EXT = { csv = "csv", tsv = "csv", json = "json", ndjson = "ndjson", jsonl = "ndjson", xlsx = "xlsx",
              sql = "sql", zip = "zip" }

local strings = { type = "list", items = "string" }

---@class import.run.Options
---@field db string
---@field table? string
---@field file? string default ctx.trigger.file
---@field store? string
---@field store_opts? table
---@field format? "csv"|"json"|"ndjson"|"xlsx"|"sql"|"zip"
---@field header? boolean
---@field names? string[]
---@field delimiter? string
---@field types? table<string, ferry.ColumnType>|ferry.ColumnType
---@field column_types? table<string, string>
---@field columns? string[]
---@field exclude? string[]
---@field create? boolean
---@field infer? boolean
---@field sample? integer
---@field on_conflict? ferry.OnConflict default "fail"
---@field on_error? ferry.OnError
---@field reimport? boolean

local OPTIONS = ferry.schema("import.run", {
  db = { type = "string", required = true },
  table = "string",
  file = "string",
  store = "string",
  store_opts = "table",
  format = { enum = { "csv", "json", "ndjson", "xlsx", "sql", "zip" } },
  header = "boolean",
  names = strings,
  delimiter = "string",
  types = "any",
  column_types = "table",
  columns = strings,
  exclude = strings,
  create = { type = "boolean", default = true },
  infer = { type = "boolean", default = true },
  sample = "integer",
  on_conflict = { enum = "on_conflict", default = "fail" },
  on_error = { enum = "on_error", default = "fail_fast" },
  reimport = { type = "boolean", default = false },
})
-- The schema, so a script can check options before it runs (jobs made from a template do).
M.schemas = { run = OPTIONS }

-- The ledger of committed imports, kept in the target database and written in the same
-- transaction as the rows: a file (by content) is imported into a target once, so a retry
-- after a crash, or the same file dropped again, does not duplicate what was committed.
local LEDGER = [[CREATE TABLE IF NOT EXISTS _ferry_imports (
  sha256 TEXT NOT NULL, target TEXT NOT NULL, file TEXT NOT NULL, rows INTEGER NOT NULL,
  run_id INTEGER NOT NULL, at TEXT NOT NULL, PRIMARY KEY (sha256, target))]]
-- MySQL keys cannot be TEXT.
local LEDGER_MYSQL = [[CREATE TABLE IF NOT EXISTS _ferry_imports (
  sha256 VARCHAR(64) NOT NULL, target VARCHAR(255) NOT NULL, file TEXT NOT NULL, rows_ BIGINT NOT NULL,
  run_id BIGINT NOT NULL, at VARCHAR(40) NOT NULL, PRIMARY KEY (sha256, target))]]

-- What differs between the databases: how to open one, quote a name, write the n-th
-- type a column, tell whether a table exists, and record an import in the ledger.
local DIALECTS = {
  sqlite = {
    open = function(db) return ferry.sqlite.open(db) end,
    quote = function(name) return '"' .. name:gsub('"', '""') .. '"' end,
    types = { INTEGER = "INTEGER", REAL = "REAL", TEXT = "TEXT", BLOB = "BLOB", [""] = "" },
    exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    ledger = LEDGER,
    seen = "SELECT run_id, at, rows FROM _ferry_imports WHERE sha256 = ? AND target = ?",
    record = "INSERT OR REPLACE INTO _ferry_imports VALUES (?, ?, ?, ?, ?, ?)",
  },
  postgres = {
    open = function(db) return ferry.postgres.connect(db) end,
    quote = function(name) return '"' .. name:gsub('"', '""') .. '"' end,
    types = { INTEGER = "bigint", REAL = "double precision", TEXT = "text", BLOB = "bytea", [""] = "text" },
    exists = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
    ledger = LEDGER,
    seen = "SELECT run_id, at, rows FROM _ferry_imports WHERE sha256 = $1 AND target = $2",
    record = "INSERT INTO _ferry_imports VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256, target) DO UPDATE SET file = EXCLUDED.file, rows = EXCLUDED.rows, run_id = EXCLUDED.run_id, at = EXCLUDED.at",
  },
  mysql = {
    open = function(db)
      if not ferry.mysql then
        ferry.error("unsupported", "import.run: MySQL databases need ferry.mysql, which this ferry does not have", 4)
      end
      return ferry.mysql.connect(db)
    end,
    quote = function(name) return "`" .. name:gsub("`", "``") .. "`" end,
    types = { INTEGER = "BIGINT", REAL = "DOUBLE", TEXT = "LONGTEXT", BLOB = "LONGBLOB", [""] = "LONGTEXT" },
    exists = "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
    ledger = LEDGER_MYSQL,
    seen = "SELECT run_id, at, rows_ AS `rows` FROM _ferry_imports WHERE sha256 = ? AND target = ?",
    record = "REPLACE INTO _ferry_imports VALUES (?, ?, ?, ?, ?, ?)",
    -- CREATE TABLE commits the open transaction: tables are created before it.
    ddl_outside = true,
    bool_columns = "SELECT column_name AS c FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_type LIKE 'tinyint(1)%'",
  },
}

-- The dialect of the import being run.
local dialect = DIALECTS.sqlite

-- The kind of database `db` names: "postgres", "mysql" (a URL, or a name from [databases.NAME])
-- or "sqlite" (a file).
local function db_kind(db)
  local scheme = (db:match("^(%a+)://") or ""):lower()
  if scheme == "" and ferry.databases then scheme = ferry.databases[db] or "" end
  if scheme == "postgres" or scheme == "postgresql" then return "postgres" end
  if scheme == "mysql" or scheme == "mariadb" then return "mysql" end
  return "sqlite"
end

local function split(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then return ".", path end
  return dir, base
end

local function extension(path)
  return (path:match("%.([%w]+)$") or ""):lower()
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

local SQL_TYPE = { integer = "INTEGER", float = "REAL", boolean = "INTEGER", bytes = "BLOB", timestamp = "INTEGER", text = "TEXT" }

-- The reader options of one input (`name` for messages, `path` for the extension).
local function reader_options(o, format, name, path)
  local ropts = { types = o.types, name = name, on_error = o.on_error, columns = o.columns, exclude = o.exclude }
  if format == "csv" then
    ropts.header = o.header
    ropts.names = o.names
    ropts.delimiter = o.delimiter or (extension(path) == "tsv" and "\t" or nil)
  end
  return ropts
end

-- The CREATE TABLE for `tbl` when it is missing and `create` is on (typed from `types` /
-- `column_types`, else inferred from a sample), or nil.
local function table_ddl(o, db, open, format, name, path, tbl)
  local d = dialect
  local exists = false
  for _ in db:query(d.exists, { tbl }):rows() do exists = true end
  if exists or not o.create then return nil end
  local ropts = reader_options(o, format, name, path)
  -- Column types come from `types` (or `column_types`, SQLite type names); text formats
  -- without a declared type give TEXT, JSON/NDJSON keep each value's own type (no affinity).
  local inferred = {}
  if (format == "csv" or format == "xlsx") and o.infer then
    -- A sample that does not parse infers nothing: the import itself reports the bad row.
    local ok, got = pcall(function()
      return M.infer(ferry[format].reader(open(), { name = name, header = ropts.header, names = ropts.names,
        delimiter = ropts.delimiter, columns = o.columns, exclude = o.exclude }), o.sample)
    end)
    if ok then inferred = got end
  end
  local src = ferry[format].reader(open(), ropts)
  local cols = {}
  for _, c in ipairs(src:columns()) do
    local generic = (type(o.types) == "table" and SQL_TYPE[o.types[c] or ""])
      or (type(o.types) == "string" and SQL_TYPE[o.types])
      or inferred[c]
      or ((format == "csv" or format == "xlsx") and "TEXT" or "")
    local declared = (o.column_types and o.column_types[c]) or d.types[generic] or generic
    cols[#cols + 1] = ("%s %s"):format(d.quote(c), declared)
  end
  src:close()
  return ("CREATE TABLE %s (%s)"):format(d.quote(tbl), table.concat(cols, ", "))
end

-- Raises `err` (caught by pcall) again, keeping its kind.
local function rethrow(err)
  if type(err) == "userdata" then
    local ok, k = pcall(function() return err.kind end)
    if ok and k then ferry.error(k, err.message, 0) end
  end
  error(err, 0)
end

-- Imports one input (`open()` gives a fresh reader of it) into `tbl`, creating the table when
-- missing, all in one transaction. Returns the counts.
local function import_one(ctx, o, db, open, format, name, path, tbl)
  if format == "sql" then
    local result
    if dialect.ddl_outside then
      -- MySQL: statement by statement, inside the transaction of the file (a CREATE, ALTER or
      -- DROP in the script commits it: MySQL does that to any transaction), read as standard
      -- SQL as export writes it ("quoted" names, no backslash escapes in 'text').
      result = { statements = 0, changes = 0 }
      local mode = ""
      for r in db:query("SELECT @@SESSION.sql_mode AS m"):rows() do mode = r.m end
      db:exec("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'ANSI_QUOTES', 'NO_BACKSLASH_ESCAPES')")
      local ok, err = pcall(function()
        for stmt in ferry.sql.reader(open(), { name = name }):statements() do
          local changed = db:exec(stmt)
          result.statements = result.statements + 1
          result.changes = result.changes + (changed or 0)
        end
      end)
      db:exec("SET SESSION sql_mode = ?", { mode })
      if not ok then rethrow(err) end
    else
      result = db:run(ferry.sql.reader(open(), { name = name }))
    end
    ctx.log.info("ran %d statements of %s (%d changes)", result.statements, name, result.changes)
    return { file = name, statements = result.statements, changes = result.changes }
  end
  -- MySQL commits an open transaction at CREATE TABLE: there the table was created before the
  -- transaction (and is dropped again when the import fails); elsewhere it is created inside the
  -- transaction of its rows, so a failure leaves neither.
  local ddl = (not dialect.ddl_outside) and table_ddl(o, db, open, format, name, path, tbl) or nil
  local ropts = reader_options(o, format, name, path)
  if dialect.bool_columns and (format == "csv" or format == "xlsx") and (o.types == nil or type(o.types) == "table") then
    -- MySQL takes no "true" into a BOOL (TINYINT(1)), which export writes for one: read those
    -- columns as booleans unless `types` says otherwise.
    local types = {}
    for k, v in pairs(o.types or {}) do types[k] = v end
    for r in db:query(dialect.bool_columns, { tbl }):rows() do
      if types[r.c] == nil then types[r.c] = "boolean" end
    end
    ropts.types = types
  end
  local src = ferry[format].reader(open(), ropts)
  local inserted, skipped = db:transaction(function(tx)
    if ddl then tx:exec(ddl) end
    return tx:insert(tbl, src, { on_conflict = o.on_conflict, create = o.create })
  end)
  if ddl then ctx.log.info("created table: %s", ddl) end
  local bad = src:errors()
  local bad_count = bad and bad.count or 0
  ctx.log.info("imported %d rows of %s into %s (%d skipped as conflicts, %d bad rows)",
    inserted, name, tbl, skipped, bad_count)
  return { inserted = inserted, skipped = skipped, bad_rows = bad_count, table = tbl, file = name }
end

-- The inputs of a zip archive: each entry with its format and table.
local function zip_plan(o, store, path, file)
  local z = ferry.zip.reader(store:open(path), { name = file })
  local plan = {}
  for _, e in ipairs(z:entries()) do
    if not e.is_dir then
      local format = EXT[extension(e.name)]
      if not format or format == "zip" then
        ferry.error("invalid", ("import.run: %s: entry %s is not csv, tsv, json, ndjson, xlsx or sql; nothing was imported")
          :format(file, e.name), 3)
      end
      local base = e.name:match("([^/]+)$"):gsub("%.[^.]*$", "")
      if format ~= "sql" and not o.table and base == "" then
        ferry.error("invalid", ("import.run: %s: entry %s names no table; give `table`"):format(file, e.name), 3)
      end
      local entry = e.name
      plan[#plan + 1] = { open = function() return z:open(entry) end, format = format,
                          name = file .. "/" .. entry, path = entry, table = o.table or base }
    end
  end
  if #plan == 0 then ferry.error("invalid", "import.run: " .. file .. " holds no files", 3) end
  return plan
end

-- Every entry of a zip archive, each by its own format, in one transaction.
local function import_zip(ctx, o, db, plan, file)
  local results = db:transaction(function()
    local out = {}
    for _, p in ipairs(plan) do
      out[#out + 1] = import_one(ctx, o, db, p.open, p.format, p.name, p.path, p.table)
    end
    return out
  end)
  local total = { inserted = 0, skipped = 0, bad_rows = 0, file = file, entries = results }
  for _, r in ipairs(results) do
    total.inserted = total.inserted + (r.inserted or 0)
    total.skipped = total.skipped + (r.skipped or 0)
    total.bad_rows = total.bad_rows + (r.bad_rows or 0)
  end
  total.table = o.table
  return total
end

-- Drops the tables this import created (MySQL, after a failure), newest first.
local function drop_created(ctx, db, created)
  for i = #created, 1, -1 do
    local ok, err = pcall(db.exec, db, "DROP TABLE " .. dialect.quote(created[i]))
    if ok then
      ctx.log.info("dropped table %s, created by the failed import", created[i])
    else
      ctx.log.warn("could not drop table %s, created by the failed import: %s", created[i], tostring(err))
    end
  end
end

-- MySQL: creates the missing tables of `plan` before the import's transaction (CREATE TABLE
-- would commit it). Returns their names; on failure drops them again and raises.
local function create_before(ctx, o, db, plan)
  local created = {}
  local ok, err = pcall(function()
    for _, p in ipairs(plan) do
      if p.format ~= "sql" then
        local ddl = table_ddl(o, db, p.open, p.format, p.name, p.path, p.table)
        if ddl then
          db:exec(ddl)
          created[#created + 1] = p.table
          ctx.log.info("created table: %s", ddl)
        end
      end
    end
  end)
  if not ok then
    drop_created(ctx, db, created)
    rethrow(err)
  end
  return created
end

---@type fun(ctx: ferry.Context, opts: import.run.Options): table
M.run = OPTIONS:wrap(function(ctx, o)
  local file = o.file or (ctx.trigger and ctx.trigger.file)
  if not file then
    ferry.error("invalid", "import.run: give `file`, or run the job from a watched folder or an upload", 2)
  end
  local store, path
  if o.store then
    store, path = ferry.store(o.store, o.store_opts), file
  else
    local dir, base = split(file)
    store, path = ferry.store(dir), base
  end
  local format = o.format or EXT[extension(path)]
  if not format then
    ferry.error("invalid", "import.run: cannot tell the format of " .. file .. "; give `format` (csv, json, ndjson, xlsx, sql or zip)", 2)
  end
  if not store:exists(path) then
    ferry.error("not_found", "import.run: " .. store:url(path) .. " does not exist", 2)
  end
  if format ~= "sql" and format ~= "zip" and not o.table then ferry.error("invalid", "import.run: give `table`", 2) end
  local d = DIALECTS[db_kind(o.db)]
  dialect = d
  local db = d.open(o.db)
  local sha = ferry.hash.sha256(store:open(path))
  local target = o.table or "(" .. format .. ")"
  db:exec(d.ledger)
  for done in db:query(d.seen, { sha, target }):rows() do
    if not o.reimport then
      ctx.log.warn("%s was imported into %s already (run %d at %s, %d rows): skipped; pass reimport = true to import it again",
        file, target, done.run_id, done.at, done.rows)
      return { inserted = 0, skipped = 0, bad_rows = 0, table = o.table, file = file, sha256 = sha,
               already_imported = { run_id = done.run_id, at = done.at, rows = done.rows } }
    end
  end
  local plan = format == "zip" and zip_plan(o, store, path, file)
    or { { open = function() return store:open(path) end, format = format, name = file, path = path, table = o.table } }
  local created = d.ddl_outside and create_before(ctx, o, db, plan) or {}
  local function all()
    local result
    if format == "zip" then
      result = import_zip(ctx, o, db, plan, file)
    else
      local p = plan[1]
      result = import_one(ctx, o, db, p.open, p.format, p.name, p.path, p.table)
    end
    db:exec(d.record,
      { sha, target, file, result.inserted or result.changes or 0, ctx.run_id, ferry.time.format(ferry.time.now()) })
    result.sha256 = sha
    return result
  end
  if #created == 0 then return db:transaction(all) end
  local ok, result = pcall(db.transaction, db, all)
  if not ok then
    -- The transaction rolled back the rows; a table made for them goes too.
    drop_created(ctx, db, created)
    rethrow(result)
  end
  return result
end)

return M
