-- Nightly incremental backup of data/docs to the backup point data/backups (seeds 002, 003).
-- Point `point` at a named S3 store (see docs/storage.md) to keep backups off the host.
local backup = require "backup"
return {
  description = "Incremental backup of data/docs every night",
  schedule = { cron = "0 1 * * *", missed = "once" },
  params = { kind = { default = "incremental", description = "full or incremental" } },
  retries = 2, retry_delay = "5m",
  run = function(ctx)
    return backup.run(ctx, { source = "data/docs", point = "data/backups", set = "docs",
      kind = ctx.params.kind, exclude = { "*.tmp", "re:(^|/)\\.cache/" }, name = "nightly docs" })
  end,
}
