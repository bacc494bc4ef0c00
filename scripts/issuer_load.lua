-- wrk script: client_credentials token requests (form body, client_secret_basic).
-- ISSUER_BASIC = base64("client-id:secret") (see scripts/issuer_load.sh). Not run by CI.
wrk.method = "POST"
wrk.path = "/oauth2/token"
wrk.body = "grant_type=client_credentials&scope=internal-service&audience=service-system"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("ISSUER_BASIC")

local bad = 0
response = function(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then
      io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
    end
  end
end
