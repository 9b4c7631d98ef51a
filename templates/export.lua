-- NAME: export a SQLite table to a file in a store (docs/plugins.md, `export`).
-- Run it with `ferry run NAME -p table=orders`.
local export = require "export"
return {
  description = "Export a table every night",
  -- schedule = "30 2 * * *",
  params = {
    db = { default = "data/shop.db", description = "SQLite database file" },
    table = { default = "orders", description = "table to export" },
    format = { default = "csv", description = "csv, json, ndjson, xlsx or sql" },
    store = { default = "data/exports", description = "where the file goes (a path, store name or s3:// URL)" },
  },
  timeout = "1h",
  run = function(ctx)
    local p = ctx.params
    return export.run(ctx, {
      db = p.db, table = p.table, format = p.format, store = p.store,
      -- mode = "part", where = "created_at >= ?", args = { "2026-01-01" },
      -- columns = { "id", "amount" }, order_by = { "-id" }, zip = p.table .. ".zip",
    })
  end,
}
