-- NAME: import every file dropped into inbox/NAME/ into a SQLite table, all-or-nothing per file
-- (docs/plugins.md, `import`). Files can also be uploaded: POST /api/v1/jobs/NAME/upload.
local import = require "import"
return {
  description = "Import files dropped into inbox/NAME",
  watch = { path = "inbox/NAME", pattern = "*.{csv,json,ndjson,xlsx}", settle = "1s" },
  retries = 1,
  run = function(ctx)
    return import.run(ctx, {
      db = "data/NAME.db",
      table = "NAME",
      types = { id = "integer" },             -- how to type columns (text otherwise)
      on_conflict = "overwrite",              -- fail | skip | overwrite
      on_error = "continue",                  -- fail_fast | continue (bad rows reported)
    })
  end,
}
