-- A quiet merchant's single usage reports for wrk, paced: report.lua's reports, each connection waiting PACE_MS
-- between its calls, so a few connections send a steady trickle rather than all they can.
-- wrk ... -s bench/wrk/quiet.lua http://127.0.0.1:PORT/v1/requests -- SECRET_KEY CUSTOMERS PACE_MS TAG
dofile("bench/wrk/report.lua")

local report_init = init
function init(args)
  pace_ms = tonumber(args[3])
  report_init({ args[1], args[2], "0", args[4] })
end

function delay()
  return pace_ms
end
