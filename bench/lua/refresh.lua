-- POST /connect/token grant_type=refresh_token with rotation.
--
-- Arguments (after --): thread count, then the initial refresh tokens (one per connection).
-- Each thread keeps a FIFO of live tokens: a request takes the oldest, and its response puts
-- the rotated token back. wrk does not say which connection a response belongs to, but every
-- token is used exactly once and each request's token is the one an earlier response
-- returned, so each token family stays one unbroken chain; a connection sends only after its
-- previous response, so the queue is never empty while every chain lives. The client's Basic
-- credentials come from -H. Tokens still queued at the end are reported ("left"), and
-- bench/wrk.py checks that they still work.

local queue, head, tail = {}, 1, 0

local function push(token)
  tail = tail + 1
  queue[tail] = token
end

local function pop()
  if head > tail then return nil end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return token
end

local function publish()
  local left = {}
  for i = head, tail do table.insert(left, queue[i]) end
  bench_left = table.concat(left, " ")
end

-- wrk 4 calls request() once on the first thread before the run, only to check that it
-- returns a valid request, and discards it: that call must not use up a token.
local verify_call_pending = false

function init(args)
  verify_call_pending = (bench_thread_id == 1)
  local threads = tonumber(args[1])
  local index = 0
  for i = 2, #args do
    if index % threads == bench_thread_id - 1 then push(args[i]) end
    index = index + 1
  end
  bench_counts.exhausted = 0
  bench_counts.missing_token = 0
  publish()
end

function request()
  if verify_call_pending then
    verify_call_pending = false
    return wrk.format("POST", "/connect/token", nil, "grant_type=refresh_token&refresh_token=verification-only")
  end
  local token = pop()
  if token == nil then
    bench_counts.exhausted = bench_counts.exhausted + 1
    token = "exhausted"
  end
  publish()
  return wrk.format("POST", "/connect/token", nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  bench_count(status)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then push(token) else bench_counts.missing_token = bench_counts.missing_token + 1 end
  end
  publish()
end
