-- Scenario 6b: password changes, POST /localapi/password, one prepared bearer token each.
--
-- Arguments (after --): thread count, then the path of a file with one "TOKEN PASSWORD" line per
-- change. A change revokes the token that made it, so every line is used once: thread t (of n)
-- takes lines t, t + n, t + 2n, ... Like signin.lua, the script needs one connection per thread
-- (-c == -t) so that each response belongs to the thread's one request in flight. When a
-- thread has used its lines it asks GET /healthz and counts "exhausted" (the run was given too
-- few tokens; the report says so). Each change's duration goes into a 1 ms histogram in
-- bench_counts ("ms <n>"); a status other than 204 counts as "error <status>".

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local items = {}
local next_item = 1
local started = nil

local function count(name)
  bench_counts[name] = (bench_counts[name] or 0) + 1
end

local function new_password()
  local hex = {}
  for i = 1, 16 do hex[i] = string.format("%x", math.random(0, 15)) end
  return "renewed-" .. table.concat(hex) .. "-pass"
end

function init(args)
  math.randomseed(os.time() + bench_thread_id * 7919)
  local threads = tonumber(args[1])
  local path = args[2]
  assert(threads and path, "pwchange.lua: needs the thread count and the tokens file")
  local line_number = 0
  for line in io.lines(path) do
    line_number = line_number + 1
    if (line_number - 1) % threads == bench_thread_id - 1 then
      local token, password = line:match("^(%S+) (%S+)$")
      assert(token, "pwchange.lua: a line is not TOKEN PASSWORD")
      table.insert(items, {token, password})
    end
  end
  bench_counts.changes = 0
end

function request()
  if started == nil then started = now_ms() end
  local item = items[next_item]
  if item == nil then
    return wrk.format("GET", "/healthz", {})
  end
  local password = new_password()
  local body = '{"current_password":"' .. item[2] .. '","new_password":"' .. password
    .. '","confirm_password":"' .. password .. '"}'
  return wrk.format("POST", "/localapi/password",
                    {["Authorization"] = "Bearer " .. item[1], ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  bench_count(status)
  local finished = now_ms()
  if items[next_item] == nil then
    count("exhausted")
  elseif status == 204 then
    bench_counts.changes = bench_counts.changes + 1
    count("ms " .. math.floor(finished - started))
  else
    count("error " .. tostring(status))
  end
  next_item = next_item + 1
  started = finished
end
