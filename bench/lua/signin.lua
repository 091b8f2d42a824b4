-- Scenario 6a: full browser-less sign-ins, authorize -> login form -> code -> token, as a
-- state machine per wrk thread.
--
-- Arguments (after --): thread count, then NAME=VALUE settings (client, redirect_uri, scope,
-- password, users, user_prefix) and PKCE pairs as "pkce=VERIFIER:CHALLENGE" (S256 needs
-- SHA-256, which wrk's LuaJIT lacks, so bench/signin.py computes a pool; the server does not
-- require a challenge to be unique, and each sign-in still gets a fresh state).
--
-- wrk's response() does not say which connection a response belongs to, so this script needs
-- exactly one connection per thread (-c == -t): each thread then sends one request at a time
-- and a thread-local state machine is exact. A sign-in is four requests:
--
--   1 GET  /connect/authorize?...           302 to the login page (no cookie: a new browser)
--   2 GET  /account/login?returnUrl=...     200; csrf_token from the form, the session cookie
--   3 POST /account/login?returnUrl=...     303 to the redirect URI with code and state (the
--                                           client needs no consent, so the sign-in answers;
--                                           303, not 302, after a POST: RFC 9700 4.12)
--   4 GET  /connect/authorize?... (cookie)  only when step 3 sent the browser back here instead:
--                                           302 to the redirect URI with code and state
--   5 POST /connect/token                   200 with access_token and id_token: one sign-in
--
-- Any other answer counts as an error ("error <step> <status>" in bench_counts) and the thread
-- starts over as a new browser. request() only reads the state, because wrk calls it once
-- before the run to check the script and throws that request away. Each sign-in's duration
-- goes into a 1 ms histogram in bench_counts ("ms <n>"), so percentiles survive wrk's copying
-- of flat tables between threads.

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

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function urldecode(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- the path (and query) of a Location header, absolute or not
local function path_of(location)
  return location:match("^https?://[^/]+(/.*)$") or location
end

local function header(headers, name)
  local wanted = name:lower()
  for k, v in pairs(headers) do
    if k:lower() == wanted then return v end
  end
  return nil
end

local settings = {}
local pairs_pool = {}
local AUTHORIZE, LOGIN_PAGE, LOGIN_POST, AUTHORIZE_SIGNED_IN, TOKEN = 1, 2, 3, 4, 5
local STEP_NAMES = {"authorize", "login_page", "login_post", "authorize_signed_in", "token"}
-- the login post's answer: 303 to the client (its authorization response), or a redirect back
-- to the authorization endpoint
local EXPECTED = {{[302] = true}, {[200] = true}, {[302] = true, [303] = true}, {[302] = true}, {[200] = true}}

-- the thread's one browser
local step, n, started = AUTHORIZE, 0, nil
local verifier, challenge, state, username = nil, nil, nil, nil
local login_path, cookie, csrf, next_path, code = nil, nil, nil, nil, nil
local answered = false  -- the login POST carried the code (step 4 skipped)

local function count(name)
  bench_counts[name] = (bench_counts[name] or 0) + 1
end

local function new_browser()
  n = n + 1
  local pair = pairs_pool[(n + bench_thread_id) % #pairs_pool + 1]
  verifier, challenge = pair[1], pair[2]
  state = string.format("t%d-%d-%d", bench_thread_id, n, math.random(1, 1e9))
  username = settings.user_prefix .. ((bench_thread_id + n) % tonumber(settings.users))
  login_path, cookie, csrf, next_path, code = nil, nil, nil, nil, nil
  answered = false
  step = AUTHORIZE
end

function init(args)
  math.randomseed(os.time() + bench_thread_id * 7919)
  for i = 2, #args do
    local name, value = args[i]:match("^([%w_]+)=(.*)$")
    if name == "pkce" then
      local v, c = value:match("^([^:]+):(.+)$")
      table.insert(pairs_pool, {v, c})
    elseif name then
      settings[name] = value
    end
  end
  assert(#pairs_pool > 0, "signin.lua: no pkce=VERIFIER:CHALLENGE pairs given")
  for _, key in ipairs({"client", "redirect_uri", "scope", "password", "users", "user_prefix"}) do
    assert(settings[key], "signin.lua: missing setting " .. key)
  end
  bench_counts.signins = 0
  new_browser()
end

function request()
  if step == AUTHORIZE then
    if started == nil then started = now_ms() end
    local query = "client_id=" .. urlencode(settings.client) .. "&response_type=code&scope=" .. urlencode(settings.scope)
      .. "&redirect_uri=" .. urlencode(settings.redirect_uri) .. "&state=" .. state
      .. "&code_challenge=" .. challenge .. "&code_challenge_method=S256"
    return wrk.format("GET", "/connect/authorize?" .. query, {})
  elseif step == LOGIN_PAGE then
    return wrk.format("GET", login_path, {})
  elseif step == LOGIN_POST then
    local body = "csrf_token=" .. urlencode(csrf) .. "&username=" .. urlencode(username)
      .. "&password=" .. urlencode(settings.password)
    return wrk.format("POST", login_path, {["Cookie"] = cookie,
                                           ["Content-Type"] = "application/x-www-form-urlencoded"}, body)
  elseif step == AUTHORIZE_SIGNED_IN then
    return wrk.format("GET", next_path, {["Cookie"] = cookie})
  else
    local body = "grant_type=authorization_code&code=" .. urlencode(code) .. "&redirect_uri="
      .. urlencode(settings.redirect_uri) .. "&code_verifier=" .. verifier .. "&client_id=" .. urlencode(settings.client)
    return wrk.format("POST", "/connect/token", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
  end
end

local function fail(status, why)
  count("error " .. STEP_NAMES[step] .. " " .. tostring(status) .. (why and (" " .. why) or ""))
  new_browser()
  started = now_ms()
end

-- The code and state of a redirect to the client; nil when both are there, else what is missing.
local function take_code(location)
  if location:sub(1, #settings.redirect_uri) ~= settings.redirect_uri then return "not to the redirect_uri" end
  local query = location:match("%?([^#]*)") or ""
  local got_state
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do
    if k == "code" then code = urldecode(v) elseif k == "state" then got_state = urldecode(v) end
  end
  if not code or got_state ~= state then return "no code or wrong state" end
  return nil
end

-- Read what this step's answer carries; return nil when it is complete, else what is missing.
local function take(status, headers, body)
  if step == AUTHORIZE then
    local location = header(headers, "Location")
    if not location or not location:find("/account/login", 1, true) then return "no login redirect" end
    login_path = path_of(location)
  elseif step == LOGIN_PAGE then
    local set_cookie = header(headers, "Set-Cookie")
    csrf = body:match('name="csrf_token"[^>]-value="([^"]+)"') or body:match('value="([^"]+)"[^>]-name="csrf_token"')
    if not set_cookie or not csrf then return "no cookie or csrf_token" end
    cookie = set_cookie:match("^([^;]+)")
  elseif step == LOGIN_POST then
    local location, set_cookie = header(headers, "Location"), header(headers, "Set-Cookie")
    if location and location:sub(1, #settings.redirect_uri) == settings.redirect_uri then
      answered = true
      return take_code(location)
    end
    if not location or not location:find("/connect/authorize", 1, true) then return "no code and no return to authorize" end
    next_path = path_of(location)
    if set_cookie then cookie = set_cookie:match("^([^;]+)") end
  elseif step == AUTHORIZE_SIGNED_IN then
    return take_code(header(headers, "Location") or "")
  else
    if not body:find('"id_token"%s*:%s*"') or not body:find('"access_token"%s*:%s*"') then
      return "no id_token or access_token"
    end
  end
  return nil
end

function response(status, headers, body)
  bench_count(status)
  if not EXPECTED[step][status] then return fail(status) end
  local missing = take(status, headers, body)
  if missing then return fail(status, missing) end
  if step < TOKEN then
    step = (step == LOGIN_POST and answered) and TOKEN or step + 1
    return
  end
  local finished = now_ms()
  bench_counts.signins = bench_counts.signins + 1
  count("ms " .. math.floor(finished - started))
  new_browser()
  started = finished
end
