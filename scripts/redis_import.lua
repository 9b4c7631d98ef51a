-- Import Redis backup files (RDB) into a Redis instance: seed 004's backup import task.
--   ferry run redis_import -p target=redis://127.0.0.1:6379/0 -p files=dump.rdb:1234 -p method=full
--   ferry run redis_import -p target=redis://... -p backup_id=20261123T020000Z-7
-- The target's password comes from the secret `redis_password` (FERRY_SECRET_REDIS_PASSWORD or
-- [secrets] in ferry.toml) and never appears in logs, errors or the API.
local redis = require "redis"
return {
  description = "Import RDB backup files into a Redis instance",
  params = {
    target = { default = "redis://127.0.0.1:6379/0", description = "target instance (redis://host:port/db)" },
    method = { default = "full", description = "full (replace existing keys) or incremental (keep them)" },
    store = { default = "data/store", description = "where the files are (a store name, path or s3:// URL)" },
    files = { description = "files to import: name[:size],... or a JSON array of {file_name, size}" },
    backup_id = { description = "instead of files: the id of a backup taken by redis_backup" },
  },
  timeout = "2h",
  overlap = "queue",
  run = function(ctx)
    local p = ctx.params
    return redis.migrate(ctx, { target = p.target, password = redis.secret(ctx, "redis_password"), method = p.method,
      store = p.store, files = p.files, backup_id = p.backup_id, point = "data/backups", set = "redis" })
  end,
}
