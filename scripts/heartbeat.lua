-- Runs every 15 minutes and records that the daemon is alive; shows a cron job at its simplest.
return {
  description = "Record a heartbeat every 15 minutes",
  schedule = { cron = "*/15 * * * *", missed = "skip" },
  timeout = "30s",
  run = function(ctx)
    local beats = (ctx.state:get("beats") or 0) + 1
    ctx.state:set("beats", beats)
    ctx.log.info("heartbeat %d (scheduled at %s)", beats, ctx.trigger.scheduled_at or "now")
    return { beats = beats }
  end,
}
