-- One non-streaming chat completion per request, to the stub provider directly or through the gateway.
-- wrk ... -s bench/wrk/forward.lua URL -- MODE SECRET_KEY CUSTOMERS TAG
--   MODE direct:   URL is the stub's /v1/chat/completions; the provider key goes in Authorization, as an SDK sends it.
--   MODE customer: URL is /v1/forward?u=...; a forward token (generateForwardToken: base64 of JSON) with secret_key,
--                  customer_id and meter_slug, so each call holds the worst case and then bills the customer. The
--                  customer changes with every request (cus_bench_0000 ... CUSTOMERS - 1), as in the report scenarios.
--   MODE byok:     URL is /v1/forward?u=...; a token with secret_key and provider_key only: nothing held, nobody
--                  charged, the call recorded as a gateway transaction.
-- The body is constant; TAG is unused (bench.sh passes one to every script).
local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding, as the SDK's Buffer.from(json).toString("base64").
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local s1, s2, s3, s4 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64
    out[#out + 1] = alphabet:sub(s1 + 1, s1 + 1) .. alphabet:sub(s2 + 1, s2 + 1) ..
      (b and alphabet:sub(s3 + 1, s3 + 1) or "=") .. (c and alphabet:sub(s4 + 1, s4 + 1) or "=")
  end
  return table.concat(out)
end

local body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},' ..
  '{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":256}'

function init(args)
  mode, key, customers = args[1], args[2], tonumber(args[3])
  sent = 0
  tokens = {}
  if mode == "customer" then
    for c = 0, customers - 1 do
      tokens[c] = "Bearer " .. base64(string.format(
        '{"secret_key":"%s","customer_id":"cus_bench_%04d","meter_slug":"tokens"}', key, c))
    end
  elseif mode == "byok" then
    tokens[0] = "Bearer " .. base64(string.format('{"secret_key":"%s","provider_key":"sk-bench-byok"}', key))
  elseif mode == "direct" then
    tokens[0] = "Bearer sk-bench-byok"
  else
    error("MODE must be direct, customer or byok")
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local token = tokens[0]
  if mode == "customer" then token = tokens[(sent * 7919 + thread_id * 104729) % customers] end
  sent = sent + 1
  wrk.headers["Authorization"] = token
  return wrk.format(nil, nil, nil, body)
end
