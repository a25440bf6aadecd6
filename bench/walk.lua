-- Walks the users 100 at a time with startIndex, from the first page to the last and over again,
-- as an IdP's import does. IDGATE_BENCH_USERS says how many there are.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IDGATE_BENCH_TOKEN")
local users = tonumber(os.getenv("IDGATE_BENCH_USERS"))
local start = 1

request = function()
  local path = wrk.path .. "?startIndex=" .. start .. "&count=100"
  start = start + 100
  if start > users then
    start = 1
  end
  return wrk.format(nil, path)
end
