-- GET with the seeded user's session cookie.
wrk.headers["Cookie"] = "idgate_session=" .. os.getenv("IDGATE_BENCH_SESSION")
