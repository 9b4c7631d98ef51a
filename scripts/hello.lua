-- The first ferry job: greets someone, counts to `count` with progress, and remembers how
-- many times it has run. Try: ferry run hello -p name=Ada -p count=5
return {
  description = "Say hello and count (the first example job)",
  params = {
    name = { type = "string", default = "world", description = "who to greet" },
    count = { type = "integer", default = 3, description = "how far to count" },
  },
  timeout = "1m",
  run = function(ctx)
    ctx.log.info("hello, %s! (run %d of job %s, started by %s)", ctx.params.name, ctx.run_id, ctx.job, ctx.trigger.kind)
    for i = 1, ctx.params.count do
      ctx.progress(i, ctx.params.count)
    end
    local runs = (ctx.state:get("runs") or 0) + 1
    ctx.state:set("runs", runs)
    return { greeted = ctx.params.name, counted = ctx.params.count, runs_so_far = runs }
  end,
}
