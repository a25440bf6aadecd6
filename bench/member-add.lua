-- PATCH a group, each request adding one more member from the seeded pool.
wrk.method = "PATCH"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IDGATE_BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/scim+json"
local ids = {}
for line in io.lines(os.getenv("IDGATE_BENCH_POOL")) do ids[#ids + 1] = line end
local offset = tonumber(os.getenv("IDGATE_BENCH_POOL_OFFSET"))
local counter = 0

request = function()
  counter = counter + 1
  local id = ids[((offset + counter - 1) % #ids) + 1]
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],' ..
    '"Operations":[{"op":"add","path":"members","value":[{"value":"' .. id .. '"}]}]}'
  return wrk.format(nil, nil, nil, body)
end
