-- Back a Redis instance up (SCAN + DUMP of every non-empty database) into data/backups/redis as
-- one RDB file with a manifest; `redis_import -p backup_id=...` imports it again.
--   ferry run redis_backup -p url=redis://127.0.0.1:6379
local redis = require "redis"
return {
  description = "Back a Redis instance up as an RDB file",
  params = {
    url = { default = "redis://127.0.0.1:6379", description = "source instance" },
    match = { default = "*", description = "only keys matching this pattern" },
  },
  timeout = "2h",
  overlap = "skip",
  run = function(ctx)
    return redis.backup(ctx, { url = ctx.params.url, password = redis.secret(ctx, "redis_password"),
      match = ctx.params.match, point = "data/backups", set = "redis" })
  end,
}
