-- Batch usage reports for wrk: POST /v1/requests/batch with ITEMS distinct reports per call.
-- wrk ... -s bench/wrk/batch.lua http://127.0.0.1:PORT/v1/requests/batch -- SECRET_KEY CUSTOMERS ITEMS TAG
-- request_id = TAG-THREAD-CALL-I. The items of a call go to customers one after another, spread over all of them.
local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  key, customers, items, tag = args[1], tonumber(args[2]), tonumber(args[3]), args[4]
  calls = 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local parts = {}
  for i = 0, items - 1 do
    local n = calls * items + i
    local customer = (n * 7919 + thread_id * 104729) % customers
    parts[#parts + 1] = string.format(
      '{"request_id":"%s-%d-%d-%d","customer_id":"cus_bench_%04d","meter_slug":"tokens",' ..
      '"input_tokens":%d,"output_tokens":%d,"metadata":{"bench":"%s"}}',
      tag, thread_id, calls, i, customer, 500 + (n * 31) % 3000, 100 + (n * 17) % 900, tag)
  end
  calls = calls + 1
  return wrk.format(nil, nil, nil, '{"requests":[' .. table.concat(parts, ",") .. ']}')
end
