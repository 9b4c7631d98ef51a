-- plugins/redis.lua: Redis backups and backup imports (seed 004).
--
--   local redis = require "redis"
--
--   -- Import RDB files (written by SAVE/BGSAVE, or by redis.backup) into a Redis instance.
--   redis.import(ctx, {
--     target = "redis://10.0.0.5:6379/0", password = ctx.secret("redis_password"),
--     method = "full",                  -- "full": replace existing keys; "incremental": keep them
--     store = "s3://bucket/backups", store_opts = { ... },           -- where the files are
--     files = { { name = "dump.rdb", size = 123456 } },              -- sizes are checked when given
--                                       -- (neither files nor backup_id: the watched/uploaded file)
--     -- or, instead of store/files, a backup taken by redis.backup:
--     backup_id = "20261123T020000Z-42", point = "data/backups", set = "redis",
--     db = nil,                         -- nil: each key into its own database; n: all into n
--     match = "user:*", types = { "hash" },  -- optional: only these keys (a partial restore)
--   })
--
--   -- Back a live instance up into a backup point as one RDB file with a manifest, registered in
--   -- the backup catalog like plugins/backup.lua's. mode = "scan" (default): SCAN + DUMP of every
--   -- non-empty database (or `dbs`), keys matching `match`; works wherever the user may DUMP.
--   -- mode = "snapshot": the server's own point-in-time RDB through replication SYNC (faster,
--   -- consistent; needs a user allowed to SYNC).
--   redis.backup(ctx, { url = "redis://...", password = ..., point = "data/backups", set = "redis",
--                       mode = "scan", match = "*", dbs = nil, name = "nightly", description = "..." })
--
-- Every file is verified completely (structure and the RDB checksum) before the first key is
-- written, so a corrupt or truncated file fails the run with the target untouched. Keys whose
-- expiry has passed are not written. Progress counts keys.

local backup = require "backup"

local M = {}

local strings = { type = "list", items = "string" }
---How to connect (options of `import` and `backup`).
---@class redis.Connection
---@field password? string
---@field username? string
---@field connect_timeout? ferry.Duration
---@field timeout? ferry.Duration

---@class redis.import.Options: redis.Connection
---@field target string
---@field method? "full"|"incremental"
---@field store? string
---@field store_opts? table
---@field files? any a list of names or { name, size }
---@field backup_id? string
---@field point? string
---@field point_opts? table
---@field set? string
---@field db? integer
---@field match? string
---@field types? string[]
---@field batch? integer

---@class redis.backup.Options: redis.Connection
---@field url string
---@field point? string
---@field point_opts? table
---@field set? string
---@field catalog? string
---@field mode? "scan"|"snapshot"
---@field match? string
---@field dbs? integer[]
---@field name? string
---@field description? string

---@class redis.copy.Options
---@field source string
---@field source_password? string
---@field target string
---@field password? string
---@field match? string
---@field method? "full"|"incremental"

local connection = {
  password = "string", username = "string", connect_timeout = "any", timeout = "any",
}
local function with_connection(fields)
  for k, v in pairs(connection) do fields[k] = v end
  return fields
end

local IMPORT = ferry.schema("redis.import", with_connection({
  target = { type = "string", required = true },
  method = { enum = { "full", "incremental" }, default = "full" },
  store = "string", store_opts = "table", files = "any",
  backup_id = "string", point = { type = "string", default = "data/backups" }, point_opts = "table",
  set = { type = "string", default = "redis" },
  db = "integer", match = "string", types = strings, batch = "integer",
}))
local BACKUP = ferry.schema("redis.backup", with_connection({
  url = { type = "string", required = true },
  point = { type = "string", default = "data/backups" }, point_opts = "table",
  set = { type = "string", default = "redis" }, catalog = "string",
  mode = { enum = { "scan", "snapshot" }, default = "scan" },
  match = "string", dbs = { type = "list", items = "integer" }, name = "string", description = "string",
}))
local COPY = ferry.schema("redis.copy", {
  source = { type = "string", required = true }, source_password = "string",
  target = { type = "string", required = true }, password = "string",
  match = { type = "string", default = "*" },
  method = { enum = { "full", "incremental" }, default = "full" },
})
-- The schemas, so a script can check options before it runs (jobs made from a template do).
M.schemas = { import = IMPORT, migrate = IMPORT, backup = BACKUP, copy = COPY }

--- A secret's value, or nil when it is not defined (a Redis without a password needs none).
function M.secret(ctx, name)
  local ok, value = pcall(ctx.secret, name)
  if ok then return value end
  if value.kind == "not_found" then return nil end
  error(value, 0)
end

-- The database a redis:// URL names explicitly (`redis://host:6379/3` → 3), or nil.
local function url_db(url)
  return tonumber(url:match("^rediss?://[^/]*/(%d+)/?$"))
end

local function file_list(files)
  if type(files) == "string" then
    if files:match("^%s*%[") then
      files = ferry.json.decode(files)
    else
      local out = {}
      for item in files:gmatch("[^,]+") do
        local name, size = item:match("^%s*(.-)%s*:%s*(%d+)%s*$")
        out[#out + 1] = { name = name or item:match("^%s*(.-)%s*$"), size = size and tonumber(size) }
      end
      files = out
    end
  end
  local out = {}
  for i, f in ipairs(files or {}) do
    if type(f) == "string" then f = { name = f } end
    -- The seed's field names are accepted too: file_name, size as a string.
    local name = f.name or f.file_name
    if type(name) ~= "string" or name == "" then
      ferry.error("invalid", string.format("redis.import: files[%d] needs a name", i), 4)
    end
    local size = f.size
    if size ~= nil then
      size = math.tointeger(tonumber(size))
      if not size or size < 0 then
        ferry.error("invalid", string.format("redis.import: files[%d] (%s): size must be a number of bytes, got %s", i, name, tostring(f.size)), 4)
      end
    end
    out[#out + 1] = { name = name, size = size }
  end
  return out
end

-- The store and files an import reads: listed files, or the RDB file of a ferry backup.
local function sources(ctx, o)
  if o.backup_id then
    local set = o.set or "redis"
    local point = ferry.store(o.point or "data/backups", o.point_opts)
    local mpath = set .. "/" .. o.backup_id .. "/manifest.json"
    if not point:exists(mpath) then
      ferry.error("not_found", "redis.import: backup " .. o.backup_id .. " not found at " .. point:url(mpath), 3)
    end
    local m = ferry.json.decode(point:read(mpath))
    if m.redis == nil then
      ferry.error("invalid", "redis.import: backup " .. o.backup_id .. " is not a Redis backup (it has no RDB file)", 3)
    end
    local files = {}
    for _, f in ipairs(m.files) do
      files[#files + 1] = { name = set .. "/" .. f["in"] .. "/data/" .. f.path, size = f.size, sha256 = f.sha256 }
    end
    ctx.log.info("importing backup %s (%d keys, taken %s from %s)", m.id, m.redis.keys, m.created, m.source)
    return point, files
  end
  if not o.files and ctx.trigger and ctx.trigger.file then
    -- A dump dropped into a watched folder (or uploaded): that file.
    local dir, base = ctx.trigger.file:match("^(.*)/([^/]+)$")
    return ferry.store(dir or "."), { { name = base or ctx.trigger.file } }
  end
  if not o.files then
    ferry.error("invalid", "redis.import: give `files` (with `store`) or `backup_id`, or run the job from a watched folder", 3)
  end
  return ferry.store(o.store or "data/store", o.store_opts), file_list(o.files)
end

--- Imports RDB files into a Redis instance. Returns the counts for the run's summary.
---@type fun(ctx: ferry.Context, opts: redis.import.Options): table
M.import = IMPORT:wrap(function(ctx, o)
  local method = o.method
  local store, files = sources(ctx, o)
  if #files == 0 then ferry.error("invalid", "redis.import: no files to import", 2) end

  -- Sizes first, where the files are.
  for _, f in ipairs(files) do
    local st = store:stat(f.name)
    if not st then ferry.error("not_found", "redis.import: " .. store:url(f.name) .. " does not exist", 2) end
    if f.size and st.size ~= f.size then
      ferry.error("data", string.format("redis.import: %s is %d bytes, the task says %d (incomplete upload?)",
        store:url(f.name), st.size, f.size), 2)
    end
    f.bytes = st.size
  end
  -- Files in a remote store (S3) are downloaded once into the run's temporary folder and read
  -- from there twice (check, then import); the host removes the folder when the run ends,
  -- whatever happens (a timeout or a cancel too).
  local tmp
  if not store:url():match("^file://") and not store:url():match("^memory://") then
    tmp = ctx.temp()
    for i, f in ipairs(files) do
      f.copy = i .. ".rdb"
      ctx.log.info("downloading %s (%d bytes)", store:url(f.name), f.bytes)
      -- The download hashes what it copies: a backup's checksum needs no second read.
      local _, sha = ferry.copy(store, f.name, tmp, f.copy, { sha256 = f.sha256 ~= nil })
      f.copied_sha256 = sha
    end
  end
  return M.import_files(ctx, o, method, tmp or store, files)
end)

-- The checks and the import proper, reading `files` from `store` (their `copy` names when set).
function M.import_files(ctx, o, method, store, files)
  local total, bytes = 0, 0
  for _, f in ipairs(files) do
    local path = f.copy or f.name
    if f.sha256 then
      local sha = f.copied_sha256 or ferry.hash.sha256(store:open(path))
      if sha ~= f.sha256 then
        ferry.error("data", string.format("redis.import: %s: checksum mismatch (expected %s, got %s)", f.name, f.sha256, sha), 0)
      end
    end
    local ok, info = pcall(ferry.redis.check, store:open(path))
    if not ok then
      -- A downloaded copy has a numbered name: say which file it is.
      if not f.copy then error(info, 0) end
      ferry.error(info.kind or "data", string.format("%s: %s", f.name, tostring(info)), 0)
    end
    f.info = info
    if info.functions > 0 then
      ctx.log.warn("%s holds %d function libraries; they are not imported (FUNCTION RESTORE them separately)",
        f.name, info.functions)
    end
    ctx.log.info("%s: RDB version %d, %d keys, checksum %s", f.name, info.version, info.keys, info.checksum)
    total, bytes = total + info.keys, bytes + f.bytes
  end

  local r = ferry.redis.connect(o.target, { password = o.password, username = o.username,
    connect_timeout = o.connect_timeout, timeout = o.timeout })
  -- A file from a newer Redis imports into an older one when the older one knows every value
  -- type in it (payloads are re-stamped); otherwise fail before the first key is written.
  local ok_version, target_version = pcall(r.rdb_version, r)
  if not ok_version then
    ctx.log.warn("%s: cannot tell the target's Redis version (%s); newer encodings are not checked up front",
      r:url(), tostring(target_version))
    target_version = nil
  end
  if target_version then
    for _, f in ipairs(files) do
      for t, n in pairs(f.info.types) do
        local wanted = true
        if o.types then
          wanted = false
          for _, name in ipairs(o.types) do
            if name == ferry.redis.type_name(t) then wanted = true end
          end
        end
        if wanted and ferry.redis.min_version(t) > target_version then
          ferry.error("unsupported", string.format("redis.import: %s holds %d %s value(s) of RDB type %d, which %s (RDB version %d) cannot read; import into a newer Redis",
            f.name, n, ferry.redis.type_name(t) or "unknown", t, r:url(), target_version), 2)
        end
      end
    end
  end
  -- Which database the keys go into: `db` when given; else the target's database (as its URL
  -- names it) when the files hold keys of one database only; else (a dump of several databases)
  -- each key into its own.
  local db = o.db
  if db == nil then
    local dbs = {}
    for _, f in ipairs(files) do
      for d in pairs(f.info.dbs) do dbs[d] = true end
    end
    local count, only = 0, nil
    for d in pairs(dbs) do count, only = count + 1, d end
    local named = url_db(o.target)
    if count <= 1 then
      db = named or only or 0
      if only and db ~= only then
        ctx.log.info("keys of database %d go into database %d of %s (its URL names it)", only, db, r:url())
      end
    else
      db = "own"
      if named then
        ctx.log.info("the files hold %d databases: each key goes into its own database (give `db` to put them all into one)", count)
      end
    end
  end
  ctx.log.info("importing %d keys from %d file(s) into %s (%s)", total, #files, r:url(), method)
  -- With a filter only some of the keys go: their number is known at the end.
  local filtered = o.match ~= nil or o.types ~= nil
  local sink = r:restore({ on_conflict = method == "full" and "overwrite" or "skip", db = db,
    batch = o.batch, progress = filtered or total })
  local ok, err = pcall(function()
    for _, f in ipairs(files) do
      ferry.pipe(ferry.redis.rdb(store:open(f.copy or f.name), { match = o.match, types = o.types }), sink,
        { close = false })
    end
    sink:close()
  end)
  local s = sink:stats()
  if not ok then
    -- Say what the target holds now: the keys written before the error stay.
    ctx.log.error("import into %s stopped after %d keys written, %d kept (existing), %d expired; running it again completes it",
      r:url(), s.restored or 0, s.skipped or 0, s.expired or 0)
    error(err, 0)
  end
  local done = (s.restored or 0) + (s.skipped or 0) + (s.expired or 0)
  ctx.progress(done, done)
  ctx.log.info("imported into %s: %d keys written, %d kept (existing), %d expired", r:url(), s.restored, s.skipped, s.expired)
  r:close()
  return { method = method, files = #files, bytes = bytes, keys = total, matched = done,
           restored = s.restored, skipped = s.skipped, expired = s.expired }
end

-- The databases holding keys (INFO keyspace); without the right to INFO, the connection's own.
local function keyspace(ctx, r)
  local ok, info = pcall(r.call, r, "INFO", "keyspace")
  if not ok then
    if info.kind ~= "denied" then error(info, 0) end
    local db = tonumber(r:url():match("/(%d+)$")) or 0
    ctx.log.warn("%s: INFO is not allowed (%s); backing up database %d only (give `dbs` for more)",
      r:url(), tostring(info), db)
    return { db }
  end
  local dbs = {}
  for db in tostring(info):gmatch("db(%d+):keys=") do
    dbs[#dbs + 1] = tonumber(db)
  end
  table.sort(dbs)
  return dbs
end

--- Backs a live instance up into a backup point as one RDB file (SCAN + DUMP, no BGSAVE
--- needed on the server), with a manifest and a catalog entry like plugins/backup.lua's.
---@type fun(ctx: ferry.Context, opts: redis.backup.Options): table
M.backup = BACKUP:wrap(function(ctx, o)
  local set = o.set
  local point = ferry.store(o.point, o.point_opts)
  local conn_opts = { password = o.password, username = o.username, connect_timeout = o.connect_timeout,
    timeout = o.timeout }
  local r = ferry.redis.connect(o.url, conn_opts)
  local mode = o.mode
  local now = ferry.time.now()
  local id = ferry.time.format(now, "%Y%m%dT%H%M%SZ") .. "-" .. ctx.run_id
  local path = set .. "/" .. id .. "/data/dump.rdb"
  local keys, per_db = 0, {}
  -- A remote point (S3) gets the file once: it is written and checked locally first, then
  -- uploaded by a copy that hashes what it sends.
  local remote = not point:url():match("^file://") and not point:url():match("^memory://")
  local stage, stage_path = point, path
  if remote then
    stage, stage_path = ctx.temp(), "dump.rdb"
  end
  -- A backup that does not complete leaves nothing at the point.
  ctx.discard_on_failure(point, set .. "/" .. id)
  if mode == "snapshot" then
    if (o.match and o.match ~= "*") or o.dbs then
      ferry.error("invalid", "redis.backup: `match` and `dbs` do not apply to mode = \"snapshot\" (it takes everything)", 2)
    end
    ctx.log.info("taking a snapshot of %s (replication SYNC) to %s", r:url(), point:url(path))
    r:snapshot(stage:create(stage_path))
    local info = ferry.redis.check(stage:open(stage_path))
    for db, n in pairs(info.dbs) do per_db[tostring(db)] = n end
    keys = info.keys
    ctx.progress(keys, keys)
  elseif mode == "scan" then
    local dbs = o.dbs or keyspace(ctx, r)
    local total = 0
    for _, db in ipairs(dbs) do
      r:call("SELECT", db)
      total = total + r:call("DBSIZE")
    end
    ctx.log.info("backing up %s (databases %s, about %d keys) to %s", r:url(), table.concat(dbs, ","), total, point:url(path))
    local out = ferry.redis.rdb_writer(stage:create(stage_path))
    for _, db in ipairs(dbs) do
      conn_opts.db = db
      local src = ferry.redis.connect(o.url, conn_opts):scan({ match = o.match, progress = total, progress_from = keys })
      local n = ferry.pipe(src, out, { close = false })
      per_db[tostring(db)] = n
      keys = keys + n
    end
    out:close()
    ctx.progress(keys, keys)
  end
  local sha
  if remote then
    _, sha = ferry.copy(stage, stage_path, point, path, { sha256 = true })
  else
    sha = ferry.hash.sha256(point:open(path))
  end
  local st = point:stat(path)
  local manifest = {
    id = id, name = o.name or set, description = o.description, set = set, kind = "full",
    source = r:url(), created = ferry.time.format(now, "%Y-%m-%dT%H:%M:%S%.3fZ"), compression = "none",
    files = { { path = "dump.rdb", size = st.size, mtime = st.modified, sha256 = sha, ["in"] = id } },
    totals = { files = 1, copied = 1, reused = 0, bytes_copied = st.size },
    redis = { keys = keys, dbs = per_db, match = o.match or "*", mode = mode },
  }
  point:write(set .. "/" .. id .. "/manifest.json", ferry.json.encode(manifest, { pretty = true }), { if_absent = true })
  backup.register(o, point, manifest)
  ctx.artifact(point, path)
  ctx.log.info("backup %s: %d keys, %d bytes", id, keys, st.size)
  r:close()
  return { id = id, keys = keys, bytes = st.size, dbs = per_db }
end)

--- Copies keys between two live instances (seed 004's online migration, without replication):
--- SCAN + DUMP on the source's database, pipelined RESTORE into the target's database (the one
--- its URL names; keys never land in the source's database number by accident).
---@type fun(ctx: ferry.Context, opts: redis.copy.Options): table
M.copy = COPY:wrap(function(ctx, o)
  local src = ferry.redis.connect(o.source, { password = o.source_password })
  local dst = ferry.redis.connect(o.target, { password = o.password })
  local total = src:call("DBSIZE")
  local sink = dst:restore({ on_conflict = o.method == "full" and "overwrite" or "skip", progress = total })
  local scanned = src:scan({ match = o.match })
  local n = ferry.pipe(scanned, sink)
  local s = sink:stats()
  ctx.log.info("copied %d keys from %s to %s: %d written, %d kept, %d expired",
    n, src:url(), dst:url(), s.restored, s.skipped, s.expired)
  return { keys = n, restored = s.restored, skipped = s.skipped, expired = s.expired,
           vanished = scanned:stats().vanished, source = src:url(), target = dst:url() }
end)

---The older name of `import` (it imports RDB files; it never migrated anything), kept so that
---scripts written for it keep working.
---@type fun(ctx: ferry.Context, opts: redis.import.Options): table
M.migrate = M.import

return M
