-- HTTP basic-auth check against the kumo-http-auth Secret, which Kubernetes
-- mounts as two files: <dir>/username and <dir>/password.
--
-- The files are read on every call rather than once at startup: kubelet
-- refreshes mounted Secret files in place, so `npm run seed -- --rotate`
-- takes effect without restarting kumod. This costs little because kumod
-- caches each validation result for 60 seconds (LRU, 128 entries); the same
-- cache means a rotated password is honoured, and an old one refused, within
-- about a minute plus kubelet's sync delay.
--
-- Secrets never appear in errors or logs: messages name the file, not its
-- content.

local mod = {}

local function read_secret_file(path)
  local file, err = io.open(path, 'rb')
  if not file then
    error(
      string.format(
        'kumomta-tilt policy: cannot read HTTP credential file %s (%s); is the kumo-http-auth Secret mounted?',
        path,
        err
      ),
      0
    )
  end
  local content = file:read 'a'
  file:close()
  -- Tolerate the single trailing newline an editor or `echo` adds.
  content = content:gsub('\r?\n$', '')
  if content == '' then
    error(string.format('kumomta-tilt policy: HTTP credential file %s is empty; run `npm run seed`', path), 0)
  end
  return content
end

function mod.read_credentials(dir)
  return read_secret_file(dir .. '/username'), read_secret_file(dir .. '/password')
end

-- Compares without an early exit, so the time taken does not reveal how many
-- leading bytes matched. Lengths still leak, as with most such comparisons.
function mod.constant_time_equals(a, b)
  local diff = #a ~ #b
  for index = 1, math.max(#a, #b) do
    diff = diff | ((a:byte(index) or 0) ~ (b:byte(index) or 0))
  end
  return diff == 0
end

-- Returns true/false for the http_server_validate_auth_basic event. A missing
-- or empty credential file raises, which kumod turns into a 500 "try again
-- later" instead of silently accepting or rejecting everyone.
function mod.validate(dir, user, password)
  local expected_user, expected_password = mod.read_credentials(dir)
  if user == nil or password == nil or user == '' or password == '' then
    return false
  end
  local user_ok = mod.constant_time_equals(user, expected_user)
  local password_ok = mod.constant_time_equals(password, expected_password)
  return user_ok and password_ok
end

return mod
