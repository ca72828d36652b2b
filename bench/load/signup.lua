-- The sign-up form's POST, as a browser sends it: the CSRF cookie and the form's token (both taken by the bench from
-- one GET /), and a new address on every request (the run, the thread and a counter). Topics come from LOAD_TOPICS
-- (comma-separated ids).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local run = os.getenv("LOAD_RUN")
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Cookie"] = "csrftoken=" .. os.getenv("LOAD_CSRF_COOKIE"),
  ["Origin"] = os.getenv("LOAD_ORIGIN"),
  ["Referer"] = os.getenv("LOAD_ORIGIN") .. "/",
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) load-bench",
}
local fixed = "&csrfmiddlewaretoken=" .. urlencode(os.getenv("LOAD_CSRF_TOKEN"))
for topic in string.gmatch(os.getenv("LOAD_TOPICS"), "%d+") do
  fixed = fixed .. "&topics=" .. topic
end
fixed = fixed .. "&keywords=protein+folding&time_zone=Europe%2FBerlin&send_hour=8&frequency=daily&weekly_day=0"
  .. "&papers_per_email=10&send_when_empty=False&website="
local sent = 0

function request()
  sent = sent + 1
  local email = string.format("load-%s-%d-%d@example.com", run, number, sent)
  return wrk.format("POST", "/", headers, "email=" .. urlencode(email) .. fixed)
end
