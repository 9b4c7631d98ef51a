-- Restore a backup of data/docs (the newest, or `id`) into `target` (seed 002's restore task).
local backup = require "backup"
return {
  description = "Restore a backup of data/docs",
  params = {
    id = { description = "backup id (default: the newest)" },
    target = { default = "data/restore", description = "where to restore (a store URL or path)" },
    conflict = { default = "skip", description = "skip, overwrite or fail: what to do with files that exist at the target (SKIP, OVERWRITE also accepted)" },
    on_error = { default = "fail_fast", description = "fail_fast or continue (FAST_FAIL, CONTINUE also accepted)" },
  },
  run = function(ctx)
    return backup.restore(ctx, { point = "data/backups", set = "docs", id = ctx.params.id,
      target = ctx.params.target, on_conflict = ctx.params.conflict, on_error = ctx.params.on_error })
  end,
}
