-- plugins/export.lua: export a SQLite table or query to csv, json, ndjson, xlsx or sql, optionally
-- zipped, into any store (seeds 000 and 001). Rows stream natively: no Lua value per row.
--
--   local export = require "export"
--   export.run(ctx, {
--     db = "data/shop.db",                 -- SQLite file (confined like local stores)
--     table = "orders",                    -- or query = "SELECT ...", args = {...}
--     mode = "part", where = "paid = ? AND created_at >= ?", args = { 1, since },
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

local M = {}

local FORMATS = { csv = true, json = true, ndjson = true, xlsx = true, sql = true }

local function quote_ident(name)
  if type(name) ~= "string" or name == "" then
    error("export: expected a column or table name, got " .. tostring(name), 3)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

local function build_query(o)
  if o.query then
    if o.where or o.order_by then
      error("export: `query` cannot be combined with `where` or `order_by`; put them into the query", 3)
    end
    return o.query, o.args or {}
  end
  if not o.table then error("export: give `table` or `query`", 3) end
  local sql = "SELECT * FROM " .. quote_ident(o.table)
  local mode = o.mode or (o.where and "part" or "all")
  if mode == "part" then
    if not o.where then error("export: mode \"part\" needs `where` (with `args` for its ? placeholders)", 3) end
    sql = sql .. " WHERE " .. o.where
  elseif mode ~= "all" then
    error("export: `mode` must be \"all\" or \"part\", got " .. tostring(mode), 3)
  end
  if o.order_by then
    local keys = {}
    for _, key in ipairs(o.order_by) do
      local desc = key:sub(1, 1) == "-"
      keys[#keys + 1] = quote_ident(desc and key:sub(2) or key) .. (desc and " DESC" or " ASC")
    end
    if #keys > 0 then sql = sql .. " ORDER BY " .. table.concat(keys, ", ") end
  end
  return sql, o.args or {}
end

--- Runs an export and records its result as an artifact of the run.
function M.run(ctx, o)
  local format = o.format or "csv"
  if not FORMATS[format] then
    error("export: `format` must be csv, json, ndjson, xlsx or sql, got " .. tostring(format), 2)
  end
  local sql, args = build_query(o)
  -- Opening a missing database would create an empty one: say it is missing instead.
  if type(o.db) ~= "string" then error("export: give `db`, the SQLite file to export from", 2) end
  local db_dir, db_file = o.db:match("^(.*)/([^/]+)$")
  if not ferry.store(db_dir or "."):exists(db_file or o.db) then
    error("export: " .. o.db .. " does not exist (the SQLite database to export from)", 2)
  end
  local file = o.path or ((o.table or "export") .. "." .. format)
  local store = ferry.store(o.store or "data/exports", o.store_opts)
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
  end
  local db = ferry.sqlite.open(o.db)
  local src = db:query(sql, args)
  local sink = ferry[format].writer(sink_out, wopts)
  -- pipe closes the sink, which commits the file (or ends the zip entry).
  local rows = ferry.pipe(src, sink)
  if archive then archive:close() end
  ctx.log.info("exported %d rows of %s as %s to %s", rows, o.table or "the query", format, store:url(target))
  ctx.artifact(store, target)
  return { rows = rows, format = format, store = store:url(), path = target, file = file }
end

return M
