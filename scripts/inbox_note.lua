-- Drop a file into inbox/notes/ and it is picked up once it is completely written, run once,
-- and moved to inbox/notes/.ferry/archive/ (or .ferry/failed/ with an error file).
return {
  description = "Log every file dropped into inbox/notes",
  watch = { path = "inbox/notes", pattern = "*", settle = "1s" },
  run = function(ctx)
    ctx.log.info("received %s", ctx.trigger.file or "(no file: run by hand)")
    return { file = ctx.trigger.file }
  end,
}
