-- Restore a backup of data/docs (the newest, or `id`) into `target` (seed 002's restore task).
local backup = require "backup"
return {
  description = "Restore a backup of data/docs",
  params = {
    id = { description = "backup id (default: the newest)" },
    target = { default = "data/restore", description = "where to restore (a store URL or path)" },
    conflict = { default = "SKIP", description = "SKIP or OVERWRITE" },
    on_error = { default = "FAST_FAIL", description = "FAST_FAIL or CONTINUE" },
  },
  run = function(ctx)
    return backup.restore(ctx, { point = "data/backups", set = "docs", id = ctx.params.id,
      target = ctx.params.target, conflict = ctx.params.conflict, on_error = ctx.params.on_error })
  end,
}
