-- Copy keys from one Redis to another while both run (seed 004's "online migration" mode,
-- without replication): SCAN + DUMP on the source, pipelined RESTORE on the target.
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
    if p.method ~= "full" and p.method ~= "incremental" then
      error("method must be full or incremental, got " .. p.method)
    end
    local src = ferry.redis.connect(p.source, { password = redis.secret(ctx, "redis_source_password") })
    local dst = ferry.redis.connect(p.target, { password = redis.secret(ctx, "redis_password") })
    local total = src:call("DBSIZE")
    local sink = dst:restore({ mode = p.method == "full" and "replace" or "skip", progress = total })
    local scanned = src:scan({ match = p.match })
    local n = ferry.pipe(scanned, sink)
    local s = sink:stats()
    ctx.log.info("copied %d keys from %s to %s: %d written, %d kept, %d expired",
      n, src:url(), dst:url(), s.restored, s.skipped, s.expired)
    return { keys = n, restored = s.restored, skipped = s.skipped, expired = s.expired,
             vanished = scanned:stats().vanished }
  end,
}
