-- Remote catalog (seed 003): every hour, find the backups at the backup point that this host
-- does not know yet (taken by another ferry) and register them, so `restore` can use them here.
local backup = require "backup"
return {
  description = "Register backups found at the backup point in this host's catalog",
  schedule = "17 * * * *",
  params = { register = { type = "boolean", default = true, description = "register what is found (false: only list)" } },
  run = function(ctx)
    return backup.discover(ctx, { point = "data/backups", set = "docs", register = ctx.params.register })
  end,
}
