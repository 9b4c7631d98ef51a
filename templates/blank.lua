-- NAME: a ferry job. Run it with `ferry run NAME`; see docs/lua-api.md for everything a
-- script can use.
return {
  description = "NAME",
  -- schedule = "0 2 * * *",                 -- cron (5 or 6 fields), or { cron = ..., timezone = ... }
  -- watch = "inbox/NAME/*.csv",              -- run once for every file dropped here
  params = {
    greeting = { default = "hello", description = "what to say" },
  },
  timeout = "10m",
  run = function(ctx)
    ctx.log.info("%s from %s (run %d)", ctx.params.greeting, ctx.job, ctx.run_id)
    return { said = ctx.params.greeting }
  end,
}
