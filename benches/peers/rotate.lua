-- wrk script: each request carries the next of the tokens in $TOKENS (one a line), in turn.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/hello", { ["Authorization"] = tokens[i] })
end
