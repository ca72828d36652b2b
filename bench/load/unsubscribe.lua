-- RFC 8058 one-click unsubscribe: POST "List-Unsubscribe=One-Click" to the signed unsubscribe URLs listed in
-- LOAD_TOKENS_FILE (one path a line). Thread n of LOAD_THREADS takes every LOAD_THREADS-th line from line n, so the
-- threads never share a reader; a thread that runs out of readers starts its share again (a second click).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) load-bench mail client",
}
local paths = {}
local next_path = 1

function init(args)
  local stride = tonumber(os.getenv("LOAD_THREADS"))
  local line_number = 0
  for line in io.lines(os.getenv("LOAD_TOKENS_FILE")) do
    if line_number % stride == number - 1 then
      paths[#paths + 1] = line
    end
    line_number = line_number + 1
  end
end

function request()
  local path = paths[next_path]
  next_path = next_path % #paths + 1
  return wrk.format("POST", path, headers, "List-Unsubscribe=One-Click")
end
