-- POST /authorize: may the seeded user view the seeded source?
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IDGATE_BENCH_ADMIN_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"subject":"' .. os.getenv("IDGATE_BENCH_SUBJECT") .. '","action":"sources.view","resource":"' ..
  os.getenv("IDGATE_BENCH_RESOURCE") .. '"}'
