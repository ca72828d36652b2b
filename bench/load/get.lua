-- GET / (the sign-up page), counting statuses.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
