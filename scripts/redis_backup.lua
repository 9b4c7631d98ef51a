-- Back a Redis instance up into data/backups/redis as one RDB file with a manifest;
-- `redis_import -p backup_id=...` imports it again.
--   ferry run redis_backup -p url=redis://127.0.0.1:6379                 (SCAN + DUMP)
--   ferry run redis_backup -p url=redis://127.0.0.1:6379 -p mode=snapshot (replication SYNC:
--     a point-in-time snapshot, faster; the user must be allowed to SYNC)
local redis = require "redis"
return {
  description = "Back a Redis instance up as an RDB file",
  params = {
    url = { default = "redis://127.0.0.1:6379", description = "source instance" },
    match = { default = "*", description = "only keys matching this pattern (mode scan)" },
    mode = { default = "scan", description = "scan (SCAN + DUMP) or snapshot (replication SYNC)" },
  },
  timeout = "2h",
  overlap = "skip",
  run = function(ctx)
    return redis.backup(ctx, { url = ctx.params.url, password = redis.secret(ctx, "redis_password"),
      match = ctx.params.match, mode = ctx.params.mode, point = "data/backups", set = "redis" })
  end,
}
