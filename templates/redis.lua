-- NAME: import Redis RDB files into a Redis instance (docs/plugins.md, `redis`).
--   ferry run NAME -p target=redis://127.0.0.1:6379/0 -p files=dump.rdb
-- The password comes from the secret `redis_password` (FERRY_SECRET_REDIS_PASSWORD).
local redis = require "redis"
return {
  description = "Import RDB files into Redis",
  params = {
    target = { default = "redis://127.0.0.1:6379/0", description = "target instance" },
    files = { default = "dump.rdb", description = "name[:size],... in the store" },
    store = { default = "data/store", description = "where the files are" },
    method = { default = "full", description = "full (replace keys) or incremental (keep existing)" },
  },
  timeout = "2h",
  overlap = "queue",
  run = function(ctx)
    local p = ctx.params
    return redis.migrate(ctx, { target = p.target, password = redis.secret(ctx, "redis_password"),
      files = p.files, store = p.store, method = p.method })
  end,
}
