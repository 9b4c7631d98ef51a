-- Copy keys from one Redis to another while both run (seed 004's "online migration" mode,
-- without replication): SCAN + DUMP on the source's database, pipelined RESTORE into the
-- target's database (the one its URL names: redis://new:6379/2 writes into database 2).
--   ferry run redis_copy -p source=redis://old:6379/0 -p target=redis://new:6379/0 -p match='user:*'
-- Passwords: the secrets redis_source_password and redis_password (or inside the URLs, which
-- are then shown as ***). Keys changed on the source during the copy may be copied before or
-- after the change; run it again (method=full) to catch up, or take a snapshot backup instead.
local redis = require "redis"
return {
  description = "Copy keys between two live Redis instances",
  params = {
    source = { default = "redis://127.0.0.1:6379/0", description = "source instance" },
    target = { default = "redis://127.0.0.1:6380/0", description = "target instance" },
    match = { default = "*", description = "only keys matching this glob" },
    method = { default = "full", description = "full (replace existing keys) or incremental (keep them)" },
  },
  timeout = "2h",
  overlap = "skip",
  run = function(ctx)
    local p = ctx.params
    return redis.copy(ctx, { source = p.source, source_password = redis.secret(ctx, "redis_source_password"),
      target = p.target, password = redis.secret(ctx, "redis_password"), match = p.match, method = p.method })
  end,
}
