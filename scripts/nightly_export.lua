-- Nightly export of paid orders to zipped CSV (seeds 000 and 001): a filtered, ordered export
-- with chosen columns, custom headers and epoch timestamps as RFC 3339, registered as an
-- artifact (download it with GET /api/v1/runs/ID/artifacts/orders.zip).
-- Works out of the box: it creates a small sample shop database on first use.
local export = require "export"

local DB = "data/sample/shop.db"

local function ensure_sample(ctx)
  local db = ferry.sqlite.open(DB)
  db:exec([[CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount REAL NOT NULL,
    paid INTEGER NOT NULL, created_at INTEGER NOT NULL)]])
  local n = 0
  for row in db:query("SELECT count(*) AS n FROM orders"):rows() do n = row.n end
  if n == 0 then
    db:exec([[WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)
      INSERT INTO orders SELECT i, 'customer ' || (i % 37), round((i % 500) * 1.25, 2), i % 3 != 0,
      1767225600 + i * 3600 FROM s]])
    ctx.log.info("created the sample database %s with 1000 orders", DB)
  end
end

return {
  description = "Export paid orders every night to zipped CSV",
  schedule = { cron = "30 2 * * *", missed = "once" },
  params = {
    since = { type = "string", default = "2026-01-01T00:00:00Z", description = "orders created at or after this time (RFC 3339 with any offset, a date or epoch seconds)" },
    format = { type = "string", default = "csv", description = "csv, json, ndjson, xlsx or sql" },
  },
  timeout = "30m",
  run = function(ctx)
    ensure_sample(ctx)
    return export.run(ctx, {
      db = DB,
      table = "orders",
      mode = "part",
      where = "paid = 1",
      since = ctx.params.since, time_column = "created_at",
      columns = { "id", "customer", "amount", "created_at" },
      order_by = { "-created_at" },
      format = ctx.params.format,
      headers = (ctx.params.format == "csv" or ctx.params.format == "xlsx") and { "Order", "Customer", "Amount", "Created" } or nil,
      timestamp_columns = { "created_at" },
      zip = "orders.zip",
      path = "orders." .. ctx.params.format,
      store = "data/exports",
    })
  end,
}
