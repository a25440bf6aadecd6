-- POST /Users, each request a new userName.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IDGATE_BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/scim+json"
local prefix = os.getenv("IDGATE_BENCH_PREFIX")
local counter = 0

request = function()
  counter = counter + 1
  local name = string.format("%s-%d@example.com", prefix, counter)
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name ..
    '","name":{"givenName":"Load","familyName":"Test"},"emails":[{"value":"' .. name ..
    '","type":"work","primary":true}],"active":true}'
  return wrk.format(nil, nil, nil, body)
end
