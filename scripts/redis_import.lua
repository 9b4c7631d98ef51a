-- Import Redis backup files (RDB) into a Redis instance: seed 004's backup import task.
--   ferry run redis_import -p target=redis://127.0.0.1:6379/0 -p files=dump.rdb:1234 -p method=full
--   ferry run redis_import -p target=redis://... -p backup_id=20261123T020000Z-7
-- A dump dropped into inbox/redis/ (or uploaded: POST /api/v1/jobs/redis_import/upload) is
-- imported into the default target, once, and then archived (failed ones go to failed/).
-- The target's password comes from the secret `redis_password` (FERRY_SECRET_REDIS_PASSWORD or
-- [secrets] in ferry.toml), or from the `password` param (seed 004 passes it with the task); it
-- never appears in logs, errors or the API (params named password are shown as ***).
local redis = require "redis"
return {
  description = "Import RDB backup files into a Redis instance",
  params = {
    target = { default = "redis://127.0.0.1:6379/0", description = "target instance (redis://host:port/db)" },
    method = { default = "full", description = "full (replace existing keys) or incremental (keep them)" },
    store = { default = "data/store", description = "where the files are (a store name, path or s3:// URL)" },
    files = { description = "files to import: name[:size],... or a JSON array of {file_name, size}" },
    backup_id = { description = "instead of files: the id of a backup taken by redis_backup" },
    db = { type = "integer", description = "write every key into this database (default: each key's own)" },
    match = { description = "only keys matching this glob (a partial restore), e.g. user:*" },
    password = { description = "target password (default: the secret redis_password); shown as *** everywhere" },
  },
  watch = { path = "inbox/redis", pattern = "*.rdb", settle = "2s" },
  timeout = "2h",
  overlap = "queue",
  run = function(ctx)
    local p = ctx.params
    return redis.import(ctx, { target = p.target, password = p.password or redis.secret(ctx, "redis_password"),
      method = p.method, store = p.store, files = p.files, backup_id = p.backup_id, db = p.db, match = p.match,
      point = "data/backups", set = "redis" })
  end,
}
