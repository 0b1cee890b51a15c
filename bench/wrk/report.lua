-- Single usage reports for wrk: POST /v1/requests with a distinct request_id per request.
-- wrk ... -s bench/wrk/report.lua http://127.0.0.1:PORT/v1/requests -- SECRET_KEY CUSTOMERS REPLAY_PERCENT TAG
-- request_id = TAG-THREAD-N (N counts per thread). A replay re-sends an earlier N of the same thread: the body is a
-- pure function of (thread, N), so it is the same report and the service answers it from its idempotency record.
local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  key, customers, replay_percent, tag = args[1], tonumber(args[2]), tonumber(args[3]), args[4]
  sent = 0
  math.randomseed(os.time() * 1000 + thread_id)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
end

local function body(n)
  -- A multiplicative hash spreads consecutive reports over the customers.
  local customer = (n * 7919 + thread_id * 104729) % customers
  return string.format(
    '{"request_id":"%s-%d-%d","customer_id":"cus_bench_%04d","meter_slug":"tokens",' ..
    '"input_tokens":%d,"output_tokens":%d,"metadata":{"bench":"%s"}}',
    tag, thread_id, n, customer, 500 + (n * 31) % 3000, 100 + (n * 17) % 900, tag)
end

function request()
  local n
  if sent > 0 and math.random(100) <= replay_percent then
    n = math.random(0, sent - 1)
  else
    n = sent
    sent = sent + 1
  end
  return wrk.format(nil, nil, nil, body(n))
end
