-- plugins/backup.lua: full and incremental backups of a store prefix to a backup point, and
-- restores (seeds 002, 003). Layout at the backup point:
--   SET/ID/data/PATH        the files this backup copied
--   SET/ID/manifest.json    written last (create-if-absent): a backup exists only once complete
-- A manifest lists every file of the source at backup time with size, mtime, sha256 and `in`,
-- the backup whose data/ holds its bytes, so an incremental restores without walking a chain.
--
--   local backup = require "backup"
--   backup.run(ctx, { source = "data/docs", point = "data/backups", set = "docs",   -- or source_db = "data/shop.db"
--     kind = "incremental", include = { "*.txt", "re:^reports/" }, exclude = { "*.tmp" },
--     since = nil, on_error = "fail_fast", name = "nightly", description = "..." })
--   backup.restore(ctx, { point = "data/backups", set = "docs", id = "...", target = "data/restore",
--     on_conflict = "skip", on_error = "fail_fast" })   -- (SKIP, OVERWRITE, CONTINUE, FAST_FAIL too)
--   backup.list({ point = "data/backups", set = "docs", name = nil, description = nil,
--                 of_source = nil, since = nil, ["until"] = nil })
--   backup.delete(ctx, { point = ..., set = ..., id = ..., cascade = false })
--   backup.delete_many(ctx, { point = ..., set = ..., ids = { ... } })   -- per-item results
--   backup.retention(ctx, { point = ..., set = ..., keep_last = 7, keep_daily = 7, keep_weekly = 4 })
--   backup.discover(ctx, { point = ..., set = ..., register = true })    -- remote catalog (seed 003)
--
-- This host's catalog of known backups is a SQLite table in `catalog` (default
-- data/catalog.db): every backup taken here is registered; `discover` finds the backups at a
-- point that the catalog does not know yet (taken by another ferry) and registers them.
--
-- Every function checks its options with a schema (unknown options and values outside their
-- choices are errors naming the calling script's line). Times (`since`, `until`) are RFC 3339
-- with any offset, dates or epoch seconds, compared as instants. Summaries carry `errors`, always
-- an array of { path, error }.

local M = {}

local strings = { type = "list", items = "string" }

-- Plain copies and restores go through ferry.copy_files in batches of at most this many files
-- or bytes: each batch is made durable at once (two syncfs), and progress is reported between.
local BATCH_FILES, BATCH_BYTES = 4096, 512 * 1024 * 1024

-- Options every function shares: where the backups are.
---Where the backups are (options of every function of this plugin).
---@class backup.Point
---@field point string the backup point: a store name or URL
---@field point_opts? table inline S3 options of the point
---@field set? string the backup set (default "default")
---@field catalog? string the SQLite catalog (default data/catalog.db)

local function at_point(extra)
  local fields = {
    point = { type = "string", required = true },
    point_opts = "table",
    set = { type = "string", default = "default" },
    catalog = "string",
  }
  for k, v in pairs(extra) do fields[k] = v end
  return fields
end

---@class backup.run.Options: backup.Point
---@field source? string the store (name or URL) to back up
---@field source_opts? table
---@field source_db? string a SQLite database to back up (a consistent snapshot) instead of `source`
---@field prefix? string only this prefix of the source
---@field kind? "full"|"incremental"
---@field include? string[] globs, or "re:" regular expressions
---@field exclude? string[]
---@field since? ferry.Time only files modified since
---@field compression? "none"|"zip"
---@field on_error? ferry.OnError
---@field name? string
---@field description? string

---@class backup.restore.Options: backup.Point
---@field id? string the backup to restore (default the newest)
---@field target string the store to restore into
---@field target_opts? table
---@field on_conflict? ferry.OnConflict default "skip"
---@field conflict? ferry.OnConflict another name of `on_conflict`
---@field on_error? ferry.OnError

---@class backup.list.Options: backup.Point
---@field name? string
---@field description? string
---@field of_source? string
---@field source_opts? table
---@field prefix? string
---@field since? ferry.Time
---@field until? ferry.Time
---@field until_? ferry.Time another name of `until`

---@class backup.known.Options: backup.Point

---@class backup.delete.Options: backup.Point
---@field id string
---@field cascade? boolean also delete the backups that depend on it

---@class backup.delete_many.Options: backup.Point
---@field ids string[]
---@field cascade? boolean

---@class backup.retention.Options: backup.Point
---@field keep_last? integer
---@field keep_daily? integer
---@field keep_weekly? integer

---@class backup.discover.Options: backup.Point
---@field register? any register what is found in the catalog

local RUN = ferry.schema("backup.run", at_point({
  source = "string", source_opts = "table", source_db = "string", prefix = "string",
  kind = { enum = { "full", "incremental" }, default = "full" },
  include = strings, exclude = strings,
  since = "time",
  compression = { enum = { "none", "zip" }, default = "none" },
  on_error = { enum = "on_error", default = "fail_fast" },
  name = "string", description = "string",
}))
local RESTORE = ferry.schema("backup.restore", at_point({
  id = "string",
  target = { type = "string", required = true }, target_opts = "table",
  on_conflict = { enum = "on_conflict", default = "skip" },
  conflict = { enum = "on_conflict", alias_of = "on_conflict" },
  on_error = { enum = "on_error", default = "fail_fast" },
}))
local LIST = ferry.schema("backup.list", at_point({
  name = "string", description = "string", of_source = "string", source_opts = "table", prefix = "string",
  since = "time", ["until"] = "time", until_ = { type = "time", alias_of = "until" },
}))
local KNOWN = ferry.schema("backup.known", at_point({}))
local DELETE = ferry.schema("backup.delete", at_point({
  id = { type = "string", required = true }, cascade = { type = "boolean", default = false },
}))
local DELETE_MANY = ferry.schema("backup.delete_many", at_point({
  ids = { type = "list", items = "string", required = true }, cascade = { type = "boolean", default = false },
}))
local RETENTION = ferry.schema("backup.retention", at_point({
  keep_last = "integer", keep_daily = "integer", keep_weekly = "integer",
}))
local DISCOVER = ferry.schema("backup.discover", at_point({ register = "any" }))
-- The schemas, so a script can check options before it runs (jobs made from a template do).
M.schemas = { run = RUN, restore = RESTORE, list = LIST, known = KNOWN, delete = DELETE,
  delete_many = DELETE_MANY, retention = RETENTION, discover = DISCOVER }

-- The kind of a caught error (`err.kind` of host errors; Lua's own errors have none).
local function kind_of(err)
  local t = type(err)
  return (t == "userdata" or t == "table") and err.kind or "error"
end

-- The message of a caught error, without a traceback.
local function message_of(err)
  return tostring(err)
end

local function matches(patterns, path)
  for _, p in ipairs(patterns or {}) do
    if p:sub(1, 3) == "re:" then
      if ferry.regex.match(p:sub(4), path) then return true end
    elseif ferry.glob.match(p, path) or ferry.glob.match("**/" .. p, path) then
      return true
    end
  end
  return false
end

local function selected(o, path)
  if o.include and #o.include > 0 and not matches(o.include, path) then return false end
  return not matches(o.exclude, path)
end

--- Every complete backup of a set at a point, oldest first (only those with a manifest).
---@type fun(opts: backup.list.Options): table
M.list = LIST:wrap(function(o)
  local point = ferry.store(o.point, o.point_opts)
  -- `of_source` filters by the backed-up store (a name or URL, like backup.run's `source`).
  local want_source = o.of_source and ferry.store(o.of_source, o.source_opts):url(o.prefix)
  local out = {}
  for _, obj in ipairs(point:list(o.set)) do
    if obj.path:match("/manifest%.json$") then
      local m = ferry.json.decode(point:read(obj.path))
      local created = ferry.time.parse(m.created)
      local ok = (not o.name or m.name == o.name)
        and (not o.description or (m.description or ""):find(o.description, 1, true))
        and (not want_source or m.source == want_source)
        and (not o.since or created >= o.since)
        and (not o["until"] or created < o["until"])
      if ok then out[#out + 1] = m end
    end
  end
  table.sort(out, function(a, b) return ferry.time.parse(a.created) < ferry.time.parse(b.created) end)
  return out
end)

local function catalog(o)
  local db = ferry.sqlite.open(o.catalog or "data/catalog.db")
  db:exec([[CREATE TABLE IF NOT EXISTS backups (
    point TEXT NOT NULL, "set" TEXT NOT NULL, id TEXT NOT NULL, name TEXT, description TEXT,
    kind TEXT, parent TEXT, source TEXT, created TEXT, files INTEGER, registered_at TEXT,
    PRIMARY KEY (point, "set", id))]])
  return db
end

--- Adds a backup's manifest to this host's catalog (used by plugins/redis.lua too).
local function register(o, point, m)
  return catalog(o):exec([[INSERT OR IGNORE INTO backups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
    { point:url(), m.set, m.id, m.name, m.description, m.kind, m.parent, m.source, m.created, #m.files,
      ferry.time.format(ferry.time.now()) })
end

M.register = register

--- The backups this host's catalog knows at a point, oldest first.
---@type fun(opts: backup.known.Options): table
M.known = KNOWN:wrap(function(o)
  local point = ferry.store(o.point, o.point_opts)
  local out = ferry.array()
  for r in catalog(o):query([[SELECT id, name, kind, parent, created, files FROM backups
      WHERE point = ? AND "set" = ? ORDER BY created]], { point:url(), o.set }):rows() do
    out[#out + 1] = r
  end
  return out
end)

--- Remote catalog: the complete backups at a point that this host does not know yet; with
--- `register = true` (or a list of ids) they are added to the catalog, so they can be restored here.
---@type fun(ctx: ferry.Context, opts: backup.discover.Options): table
M.discover = DISCOVER:wrap(function(ctx, o)
  if o.register ~= nil and type(o.register) ~= "boolean" and type(o.register) ~= "table" then
    ferry.error("invalid", "backup.discover: option `register`: expected true, false or a list of ids, got " .. type(o.register), 2)
  end
  local point = ferry.store(o.point, o.point_opts)
  local where = { point = o.point, point_opts = o.point_opts, set = o.set, catalog = o.catalog }
  local known = {}
  for _, k in ipairs(M.known(where)) do known[k.id] = true end
  local wanted
  if type(o.register) == "table" then
    wanted = {}
    for _, id in ipairs(o.register) do wanted[id] = true end
  end
  local found, registered = ferry.array(), ferry.array()
  for _, m in ipairs(M.list(where)) do
    if not known[m.id] then
      found[#found + 1] = { id = m.id, name = m.name, kind = m.kind, created = m.created, files = #m.files }
      if o.register == true or (wanted and wanted[m.id]) then
        register(o, point, m)
        registered[#registered + 1] = m.id
      end
    end
  end
  ctx.log.info("%d backups at %s unknown here, %d registered", #found, point:url(o.set), #registered)
  return { found = found, registered = registered }
end)

local function manifest_of(point, set, id)
  local path = set .. "/" .. id .. "/manifest.json"
  if not point:exists(path) then return nil end
  return ferry.json.decode(point:read(path))
end

local function dependents(all, id)
  local out = {}
  for _, m in ipairs(all) do
    if m.id ~= id then
      for _, f in ipairs(m.files) do
        if f["in"] == id then out[#out + 1] = m.id; break end
      end
    end
  end
  return out
end

--- Deletes one backup; refused while a later backup still needs its files, unless `cascade`.
---@type fun(ctx: ferry.Context, opts: backup.delete.Options): table
M.delete = DELETE:wrap(function(ctx, o)
  local point = ferry.store(o.point, o.point_opts)
  local set = o.set
  if not manifest_of(point, set, o.id) then
    ferry.error("not_found", "backup " .. o.id .. " does not exist at " .. point:url(set), 2)
  end
  local where = { point = o.point, point_opts = o.point_opts, set = set, catalog = o.catalog }
  local all = M.list(where)
  local deps = dependents(all, o.id)
  if #deps > 0 and not o.cascade then
    ferry.error("denied", "backup " .. o.id .. " is needed by " .. table.concat(deps, ", ") .. "; delete those first or pass cascade = true", 2)
  end
  local deleted = ferry.array()
  for _, d in ipairs(deps) do
    for _, id in ipairs(M.delete(ctx, { point = o.point, point_opts = o.point_opts, set = set, id = d, cascade = true,
                                        catalog = o.catalog }).deleted) do
      deleted[#deleted + 1] = id
    end
  end
  -- The manifest goes first: from then on the backup is not visible, whatever happens next.
  point:delete(set .. "/" .. o.id .. "/manifest.json")
  for _, obj in ipairs(point:list(set .. "/" .. o.id)) do point:delete(obj.path) end
  catalog(o):exec([[DELETE FROM backups WHERE point = ? AND "set" = ? AND id = ?]], { point:url(), set, o.id })
  ctx.log.info("deleted backup %s", o.id)
  deleted[#deleted + 1] = o.id
  return { deleted = deleted }
end)

--- Deletes several backups; never stops at the first failure. Seed 003's batch delete.
---@type fun(ctx: ferry.Context, opts: backup.delete_many.Options): table
M.delete_many = DELETE_MANY:wrap(function(ctx, o)
  local results, ok_count = ferry.array(), 0
  for _, id in ipairs(o.ids) do
    local ok, err = pcall(M.delete, ctx, { point = o.point, point_opts = o.point_opts, set = o.set, id = id,
                                           cascade = o.cascade, catalog = o.catalog })
    if ok then ok_count = ok_count + 1 end
    results[#results + 1] = { id = id, ok = ok, error = (not ok) and message_of(err) or nil,
                              kind = (not ok) and kind_of(err) or nil }
  end
  return { deleted = ok_count, failed = #results - ok_count, results = results }
end)

--- Keeps the newest `keep_last`, the newest of each of the last `keep_daily` days and
--- `keep_weekly` weeks (and every backup those still need); deletes the rest.
---@type fun(ctx: ferry.Context, opts: backup.retention.Options): table
M.retention = RETENTION:wrap(function(ctx, o)
  local all = M.list({ point = o.point, point_opts = o.point_opts, set = o.set, catalog = o.catalog })
  local keep = {}
  local function newest_per(n, key)
    if not n or n <= 0 then return end
    local seen, count = {}, 0
    for i = #all, 1, -1 do
      local k = key(all[i])
      if not seen[k] then
        seen[k] = true
        count = count + 1
        if count > n then break end
        keep[all[i].id] = true
      end
    end
  end
  newest_per(o.keep_last, function(m) return m.id end)
  newest_per(o.keep_daily, function(m) return m.created:sub(1, 10) end)
  newest_per(o.keep_weekly, function(m) return math.floor((ferry.time.parse(m.created) / 86400 + 3) / 7) end)
  local by_id = {}
  for _, m in ipairs(all) do by_id[m.id] = m end
  -- Keep what kept backups still read their files from.
  local changed = true
  while changed do
    changed = false
    for id in pairs(keep) do
      for _, f in ipairs(by_id[id].files) do
        if by_id[f["in"]] and not keep[f["in"]] then keep[f["in"]] = true; changed = true end
      end
    end
  end
  local doomed = {}
  for i = #all, 1, -1 do
    if not keep[all[i].id] then doomed[#doomed + 1] = all[i].id end
  end
  local result = M.delete_many(ctx, { point = o.point, point_opts = o.point_opts, set = o.set, ids = doomed,
                                      cascade = true, catalog = o.catalog })
  local kept = ferry.array()
  for id in pairs(keep) do kept[#kept + 1] = id end
  table.sort(kept)
  result.kept = kept
  return result
end)

--- Takes a backup. Every source entry that cannot be read (a dangling symlink, a fifo, a
--- device, a file without read permission) is reported with the reason, in the log and in the
--- summary's `errors`; with on_error = "fail_fast" (the default) the backup stops before it
--- copies anything, with "continue" it backs up the rest and the run's summary says what was
--- left out. A source folder that does not exist is an error.
---@type fun(ctx: ferry.Context, opts: backup.run.Options): table
M.run = RUN:wrap(function(ctx, o)
  local set = o.set
  if o.source_db then
    if o.source then ferry.error("invalid", "backup.run: give `source` or `source_db`, not both", 2) end
    -- A live SQLite database is copied consistently (online backup API) into a snapshot folder,
    -- which is then backed up like any folder.
    local name = o.source_db:match("([^/]+)$")
    local dir = "data/.snapshots/" .. set
    ferry.sqlite.snapshot(o.source_db, dir .. "/" .. name)
    o.source, o.source_opts = dir, nil
  end
  if not o.source then ferry.error("invalid", "backup.run: give `source` (a store) or `source_db`", 2) end
  local src = ferry.store(o.source, o.source_opts)
  local point = ferry.store(o.point, o.point_opts)
  local ok, objects, unreadable = pcall(src.walk, src, o.prefix or "")
  if not ok then
    local err = objects
    if kind_of(err) == "not_found" then
      ferry.error("not_found", "backup.run: the source " .. src:url(o.prefix) .. " does not exist", 2)
    end
    error(err, 0)
  end
  local errors = ferry.array()
  for _, u in ipairs(unreadable) do
    if selected(o, u.path) then
      ctx.log.error("cannot back up %s: %s", u.path, u.error)
      errors[#errors + 1] = { path = u.path, error = u.error }
    end
  end
  if #errors > 0 and o.on_error == "fail_fast" then
    local first = {}
    for i = 1, math.min(#errors, 5) do first[i] = errors[i].path .. " (" .. errors[i].error .. ")" end
    ferry.error("io", ("backup.run: %d entr%s of %s cannot be read, nothing was backed up (on_error = \"fail_fast\"; \"continue\" backs up the rest): %s%s")
      :format(#errors, #errors == 1 and "y" or "ies", src:url(o.prefix), table.concat(first, ", "), #errors > 5 and ", ..." or ""), 2)
  end
  local parent
  if o.kind == "incremental" then
    local all = M.list({ point = o.point, point_opts = o.point_opts, set = set })
    parent = all[#all]
    if not parent then ctx.log.warn("no earlier backup of set %s: taking a full backup", set) end
  end
  local known = {}
  if parent then
    for _, f in ipairs(parent.files) do known[f.path] = f end
  end
  local now = ferry.time.now()
  local id = ferry.time.format(now, "%Y%m%dT%H%M%SZ") .. "-" .. ctx.run_id
  -- Whatever this backup writes goes again if the run does not succeed (an error, a timeout, a
  -- cancel, a killed worker): no manifest-less data piles up at the point.
  ctx.discard_on_failure(point, set .. "/" .. id)
  local files, copied, bytes, reused = ferry.array(), 0, 0, 0
  local archive
  -- Plain copies go in batches through ferry.copy_files: hashed while copied (one read), both
  -- cores, and made durable once per batch rather than once per file. `files` keeps the walk's
  -- order: a batched entry holds its place until its copy is known to have succeeded.
  local batch, batch_bytes = {}, 0
  -- `level`: the Lua frames between ferry.error and the script that called backup.run.
  local function fail_or_record(path, err_kind, err_message, level)
    -- A zip archive cannot go on after a failed entry; a plain copy can.
    if o.on_error == "fail_fast" or o.compression == "zip" then
      ferry.error(err_kind, "backup.run: " .. path .. ": " .. err_message .. "; nothing was backed up", level)
    end
    ctx.log.error("cannot back up %s: %s", path, err_message)
    errors[#errors + 1] = { path = path, error = err_message }
  end
  local function flush()
    if #batch == 0 then return end
    local list = {}
    for i, b in ipairs(batch) do list[i] = { from = b.obj.path, to = set .. "/" .. id .. "/data/" .. b.obj.path } end
    local results = ferry.copy_files(src, point, list, { on_error = o.on_error })
    for i, b in ipairs(batch) do
      local r = results[i]
      if r.ok then
        b.entry.sha256 = r.sha256
        copied = copied + 1
        bytes = bytes + b.obj.size
      elseif r.attempted ~= false then
        b.entry.failed = true
        fail_or_record(b.obj.path, r.kind, r.error, 4)
      end
    end
    batch, batch_bytes = {}, 0
  end
  local function copy_one(obj)
    local prev = known[obj.path]
    if prev and prev.size == obj.size and prev.mtime == obj.modified then
      files[#files + 1] = prev
      reused = reused + 1
      return
    end
    local entry = { path = obj.path, size = obj.size, mtime = obj.modified, ["in"] = id }
    if o.compression == "zip" then
      entry.sha256 = ferry.hash.sha256(src:open(obj.path))
      archive = archive or ferry.zip.writer(point:create(set .. "/" .. id .. "/data.zip"))
      archive:add(obj.path, src:open(obj.path))
      entry.zip = true
      copied = copied + 1
      bytes = bytes + obj.size
    else
      batch[#batch + 1] = { obj = obj, entry = entry }
      batch_bytes = batch_bytes + obj.size
    end
    files[#files + 1] = entry
  end
  for i, obj in ipairs(objects) do
    if ctx.cancelled() then ferry.error("cancelled", "backup cancelled", 2) end
    -- `since` keeps only files changed at or after it (seed 002's incremental-since); times
    -- compare as instants, whatever offset `since` was written with.
    local changed = not o.since or not obj.modified or ferry.time.parse(obj.modified) >= o.since
    if selected(o, obj.path) and changed then
      local copied_ok, err = pcall(copy_one, obj)
      if not copied_ok then fail_or_record(obj.path, kind_of(err), message_of(err), 3) end
    end
    if #batch >= BATCH_FILES or batch_bytes >= BATCH_BYTES then flush() end
    ctx.progress(i, #objects)
  end
  flush()
  -- Entries whose batched copy failed (on_error = "continue") are left out of the manifest.
  local kept = ferry.array()
  for _, f in ipairs(files) do
    if not f.failed then kept[#kept + 1] = f end
  end
  files = kept
  if archive then archive:close() end
  local manifest = {
    compression = o.compression,
    id = id, name = o.name or set, description = o.description, set = set, kind = parent and "incremental" or "full",
    parent = parent and parent.id or nil, source = src:url(o.prefix), created = ferry.time.format(now, "%Y-%m-%dT%H:%M:%S%.3fZ"),
    files = files, errors = errors,
    totals = { files = #files, copied = copied, reused = reused, bytes_copied = bytes, failed = #errors },
  }
  point:write(set .. "/" .. id .. "/manifest.json", ferry.json.encode(manifest, { pretty = true }), { if_absent = true })
  register(o, point, manifest)
  if #errors > 0 then
    ctx.log.warn("backup %s of %s: %d files (%d copied, %d unchanged), %d left out (see errors)", id, manifest.source,
      #files, copied, reused, #errors)
  else
    ctx.log.info("backup %s of %s: %d files (%d copied, %d unchanged)", id, manifest.source, #files, copied, reused)
  end
  ctx.artifact(point, set .. "/" .. id .. "/manifest.json")
  return { id = id, kind = manifest.kind, parent = manifest.parent, files = #files, copied = copied, reused = reused,
           bytes = bytes, failed = #errors, errors = errors }
end)

--- Restores a backup into `target`. Every file is checked against its SHA-256 as it is copied and
--- written atomically (a file that does not match never gets its name). `on_conflict`: "skip" (default) keeps files that exist at the target,
--- "overwrite" replaces them, "fail" fails those files. `on_error`: "fail_fast" (default) stops
--- at the first failed file, "continue" restores the rest and reports each failure in `errors`.
---@type fun(ctx: ferry.Context, opts: backup.restore.Options): table
M.restore = RESTORE:wrap(function(ctx, o)
  local point = ferry.store(o.point, o.point_opts)
  local set = o.set
  local id = o.id
  if not id then
    local all = M.list({ point = o.point, point_opts = o.point_opts, set = set })
    if #all == 0 then ferry.error("not_found", "backup.restore: no backup of set " .. set .. " at " .. point:url(), 2) end
    id = all[#all].id
  end
  local mpath = set .. "/" .. id .. "/manifest.json"
  if not point:exists(mpath) then
    ferry.error("not_found", "backup.restore: backup " .. id .. " not found at " .. point:url(mpath), 2)
  end
  local m = ferry.json.decode(point:read(mpath))
  local target = ferry.store(o.target, o.target_opts)
  local restored, skipped, failed, errors = 0, 0, 0, ferry.array()
  local zips = {}
  local function mismatch(f, sha)
    ferry.error("data", string.format("checksum mismatch in backup %s (expected %s, got %s)", f["in"], f.sha256, sha), 0)
  end
  local function from_zip(f)
    -- Extract to a temp name in the target, verify, then move into place: nothing unverified
    -- becomes visible under the file's name.
    local z = zips[f["in"]]
    if not z then
      z = ferry.zip.reader(point:open(set .. "/" .. f["in"] .. "/data.zip"))
      zips[f["in"]] = z
    end
    local tmp = ".ferry-restore/" .. f.path
    z:extract(f.path, target:create(tmp))
    local sha = ferry.hash.sha256(target:open(tmp))
    if sha ~= f.sha256 then
      target:delete(tmp)
      mismatch(f, sha)
    end
    target:copy(tmp, f.path)
    target:delete(tmp)
  end
  local function failed_file(f, err_kind, err_message, level)
    failed = failed + 1
    errors[#errors + 1] = { path = f.path, error = err_message }
    if o.on_error == "fail_fast" then
      ferry.error(err_kind, "backup.restore: restore of " .. id .. " failed: " .. f.path .. ": " .. err_message, level)
    end
    ctx.log.error("%s: %s", f.path, err_message)
  end
  -- Plain files go in batches through ferry.copy_files: each is verified against its SHA-256
  -- while it is copied to a temp name, and only a verified file is renamed into place.
  local batch, batch_bytes = {}, 0
  local function flush()
    if #batch == 0 then return end
    local list = {}
    for i, f in ipairs(batch) do
      list[i] = { from = set .. "/" .. f["in"] .. "/data/" .. f.path, to = f.path, sha256 = f.sha256 }
    end
    local results = ferry.copy_files(point, target, list, { on_conflict = o.on_conflict, on_error = o.on_error })
    for i, f in ipairs(batch) do
      local r = results[i]
      if r.skipped then
        skipped = skipped + 1
      elseif r.ok then
        restored = restored + 1
      elseif r.attempted ~= false then
        local msg = r.error
        if r.kind == "data" and r.sha256 then
          msg = string.format("checksum mismatch in backup %s (expected %s, got %s)", f["in"], f.sha256, r.sha256)
        end
        failed_file(f, r.kind, msg, 4)
      end
    end
    batch, batch_bytes = {}, 0
  end
  for i, f in ipairs(m.files) do
    if f.zip then
      -- Keep the manifest's order of results: what is batched goes first.
      flush()
      local ok, err = pcall(function()
        if o.on_conflict ~= "overwrite" and target:exists(f.path) then
          if o.on_conflict == "skip" then skipped = skipped + 1; return end
          ferry.error("already_exists", "exists at the target (on_conflict = \"fail\")", 0)
        end
        from_zip(f)
        restored = restored + 1
      end)
      if not ok then failed_file(f, kind_of(err), message_of(err), 3) end
    else
      batch[#batch + 1] = f
      batch_bytes = batch_bytes + (f.size or 0)
      if #batch >= BATCH_FILES or batch_bytes >= BATCH_BYTES then flush() end
    end
    ctx.progress(i, #m.files)
  end
  flush()
  ctx.log.info("restored backup %s: %d files, %d skipped, %d failed", id, restored, skipped, failed)
  return { id = id, restored = restored, skipped = skipped, failed = failed, errors = errors }
end)

return M
