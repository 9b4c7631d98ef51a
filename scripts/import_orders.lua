-- Drop orders as CSV, JSON or NDJSON into inbox/orders/ (or upload them with
-- POST /api/v1/jobs/import_orders/upload): each file is imported once, all-or-nothing, into
-- data/sample/shop.db; bad rows are skipped and reported with their line numbers.
local import = require "import"
return {
  description = "Import order files dropped into inbox/orders",
  watch = { path = "inbox/orders", pattern = "*.{csv,json,ndjson}", settle = "1s" },
  retries = 1,
  run = function(ctx)
    return import.run(ctx, {
      db = "data/sample/shop.db",
      table = "imported_orders",
      types = { id = "integer", amount = "float" },
      on_conflict = "overwrite",
      on_error = "continue",
    })
  end,
}
