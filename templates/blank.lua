-- NAME: a ferry job. Run it with `ferry run NAME -p name=Ada`; see docs/lua-api.md for
-- everything a script can use.
return {
  description = "NAME",
  -- schedule = "0 2 * * *",                 -- cron (5 or 6 fields), or { cron = ..., timezone = ... }
  -- watch = "inbox/NAME/*.csv",              -- run once for every file dropped here
  params = {
    name = { default = "world", description = "who to greet" },
  },
  timeout = "10m",
  run = function(ctx)
    ctx.log.info("hello, %s (job %s, run %d)", ctx.params.name, ctx.job, ctx.run_id)
    return { greeted = ctx.params.name }
  end,
}
