-- NAME: incremental backup of a folder to a backup point (docs/plugins.md, `backup`).
-- Restore with backup.restore(ctx, { point = ..., set = "NAME", id = ..., target = ... }).
local backup = require "backup"
return {
  description = "Back data/NAME up every night",
  schedule = { cron = "0 1 * * *", missed = "once" },
  params = { kind = { default = "incremental", description = "full or incremental" } },
  retries = 2, retry_delay = "5m",
  run = function(ctx)
    return backup.run(ctx, {
      source = "data/NAME",                   -- a path, store name or s3:// URL
      point = "data/backups",                 -- where backups go (a named S3 store keeps them off the host)
      set = "NAME", kind = ctx.params.kind,
      exclude = { "*.tmp" },
    })
  end,
}
