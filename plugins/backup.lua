-- plugins/backup.lua: full and incremental backups of a store prefix to a backup point, and
-- restores (seeds 002, 003). Layout at the backup point:
--   SET/ID/data/PATH        the files this backup copied
--   SET/ID/manifest.json    written last (create-if-absent): a backup exists only once complete
-- A manifest lists every file of the source at backup time with size, mtime, sha256 and `in`,
-- the backup whose data/ holds its bytes, so an incremental restores without walking a chain.
--
--   local backup = require "backup"
--   backup.run(ctx, { source = "data/docs", point = "data/backups", set = "docs",
--     kind = "incremental", include = { "*.txt", "re:^reports/" }, exclude = { "*.tmp" },
--     name = "nightly", description = "..." })
--   backup.restore(ctx, { point = "data/backups", set = "docs", id = "...", target = "data/restore",
--     conflict = "SKIP", on_error = "FAST_FAIL" })
--   backup.list({ point = "data/backups", set = "docs", name = nil, since = nil, until_ = nil })

local M = {}

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
function M.list(o)
  local point = ferry.store(o.point, o.point_opts)
  local out = {}
  for _, obj in ipairs(point:list(o.set)) do
    if obj.path:match("/manifest%.json$") then
      local m = ferry.json.decode(point:read(obj.path))
      local ok = (not o.name or m.name == o.name)
        and (not o.description or (m.description or ""):find(o.description, 1, true))
        and (not o.source or m.source == o.source)
        and (not o.since or m.created >= o.since)
        and (not o.until_ or m.created < o.until_)
      if ok then out[#out + 1] = m end
    end
  end
  table.sort(out, function(a, b) return a.created < b.created end)
  return out
end

function M.run(ctx, o)
  local kind = o.kind or "full"
  if kind ~= "full" and kind ~= "incremental" then
    error("backup: `kind` must be \"full\" or \"incremental\", got " .. tostring(kind), 2)
  end
  local src = ferry.store(o.source, o.source_opts)
  local point = ferry.store(o.point, o.point_opts)
  local set = o.set or "default"
  local parent
  if kind == "incremental" then
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
  local files, copied, bytes, reused = {}, 0, 0, 0
  local objects = src:list(o.prefix or "")
  for i, obj in ipairs(objects) do
    if ctx.cancelled() then error("backup cancelled") end
    -- `since` (RFC 3339) keeps only files changed at or after it (seed 002's incremental-since).
    if selected(o, obj.path) and (not o.since or obj.modified >= o.since) then
      local prev = known[obj.path]
      if prev and prev.size == obj.size and prev.mtime == obj.modified then
        files[#files + 1] = prev
        reused = reused + 1
      else
        local sha = ferry.hash.sha256(src:open(obj.path))
        ferry.copy(src, obj.path, point, set .. "/" .. id .. "/data/" .. obj.path)
        files[#files + 1] = { path = obj.path, size = obj.size, mtime = obj.modified, sha256 = sha, ["in"] = id }
        copied = copied + 1
        bytes = bytes + obj.size
      end
    end
    ctx.progress(i, #objects)
  end
  local manifest = {
    id = id, name = o.name or set, description = o.description, set = set, kind = parent and "incremental" or "full",
    parent = parent and parent.id or nil, source = src:url(o.prefix), created = ferry.time.format(now, "%Y-%m-%dT%H:%M:%S%.3fZ"),
    files = files, totals = { files = #files, copied = copied, reused = reused, bytes_copied = bytes },
  }
  point:write(set .. "/" .. id .. "/manifest.json", ferry.json.encode(manifest, { pretty = true }), { if_absent = true })
  ctx.log.info("backup %s of %s: %d files (%d copied, %d unchanged)", id, manifest.source, #files, copied, reused)
  ctx.artifact(point, set .. "/" .. id .. "/manifest.json")
  return { id = id, kind = manifest.kind, parent = manifest.parent, files = #files, copied = copied, reused = reused, bytes = bytes }
end

function M.restore(ctx, o)
  local point = ferry.store(o.point, o.point_opts)
  local set = o.set or "default"
  local id = o.id
  if not id then
    local all = M.list({ point = o.point, point_opts = o.point_opts, set = set })
    if #all == 0 then error("restore: no backup of set " .. set .. " at " .. point:url(), 2) end
    id = all[#all].id
  end
  local mpath = set .. "/" .. id .. "/manifest.json"
  if not point:exists(mpath) then error("restore: backup " .. id .. " not found at " .. point:url(mpath), 2) end
  local m = ferry.json.decode(point:read(mpath))
  local target = ferry.store(o.target, o.target_opts)
  local conflict = (o.conflict or "SKIP"):upper()
  local on_error = (o.on_error or "FAST_FAIL"):upper()
  local restored, skipped, failed, errors = 0, 0, 0, {}
  for i, f in ipairs(m.files) do
    local ok, err = pcall(function()
      if conflict == "SKIP" and target:exists(f.path) then skipped = skipped + 1; return end
      local from = set .. "/" .. f["in"] .. "/data/" .. f.path
      local sha = ferry.hash.sha256(point:open(from))
      if sha ~= f.sha256 then
        error(string.format("%s: checksum mismatch in backup %s (expected %s, got %s)", f.path, f["in"], f.sha256, sha))
      end
      ferry.copy(point, from, target, f.path)
      restored = restored + 1
    end)
    if not ok then
      failed = failed + 1
      errors[#errors + 1] = tostring(err)
      if on_error == "FAST_FAIL" then error("restore of " .. id .. " failed: " .. tostring(err), 0) end
      ctx.log.error("%s", tostring(err))
    end
    ctx.progress(i, #m.files)
  end
  ctx.log.info("restored backup %s: %d files, %d skipped, %d failed", id, restored, skipped, failed)
  return { id = id, restored = restored, skipped = skipped, failed = failed, errors = errors }
end

return M
