-- Shared by every wrk script (prepended by bench/wrk.py): counts response statuses per
-- thread and prints one JSON line at the end, which bench/wrk.py parses:
--   BENCH_JSON {"requests":..,"duration_us":..,"p50_us":..,"p99_us":..,"statuses":{"200":..},..}
-- wrk copies only flat tables between threads (a nested table crashes it), hence the
-- separate globals: bench_statuses (status -> count), bench_counts (name -> number) and
-- bench_left (a string of space-separated tokens).

local bench_threads = {}
local bench_thread_count = 0

function setup(thread)
  bench_thread_count = bench_thread_count + 1
  thread:set("bench_thread_id", bench_thread_count)
  table.insert(bench_threads, thread)
end

bench_statuses = {}
bench_counts = {}
bench_left = ""

function bench_count(status)
  local key = tostring(status)
  bench_statuses[key] = (bench_statuses[key] or 0) + 1
end

-- Scenario scripts may replace this; they must call bench_count(status).
function response(status, headers, body)
  bench_count(status)
end

local function json_escape(s)
  return (tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

local function json_object(t, fmt)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s":' .. fmt, json_escape(k), v)) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local statuses, counts, left = {}, {}, {}
  for _, thread in ipairs(bench_threads) do
    for k, v in pairs(thread:get("bench_statuses") or {}) do statuses[k] = (statuses[k] or 0) + v end
    for k, v in pairs(thread:get("bench_counts") or {}) do counts[k] = (counts[k] or 0) + v end
    for token in string.gmatch(thread:get("bench_left") or "", "%S+") do
      table.insert(left, '"' .. json_escape(token) .. '"')
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statuses":%s,"counts":%s,"left":[%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.timeout,
    json_object(statuses, "%d"), json_object(counts, "%d"), table.concat(left, ",")))
end
