-- GET with the bench token.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IDGATE_BENCH_TOKEN")
