-- Runs a kumomta-tilt policy file in this Lua VM against the recording kumo
-- module, fires events the way kumod/tsa-daemon would, and prints one JSON
-- document on stdout for the TypeScript tests.
--
-- Usage: lua5.4 run.lua <policy-file> <kumod|tsa> [step...]
-- Steps (arguments are taken literally, so any byte can be tested):
--   init                     fire `init` (kumod) or `tsa_init` (tsa)
--   queue <domain>           resolve a scheduled queue for <domain>, no tenant
--   rebound <domain> <rd>    same with routing_domain <rd> (as after an admin
--                            rebind), tenant "tilt"
--   message <rcpt> <camp>    fire http_message_generated for a message to
--                            <rcpt> (<camp> = X-Campaign header, "" for none),
--                            then resolve its queue like kumod does
--   auth <user> <password>   fire http_server_validate_auth_basic
--   write <path> <content>   replace a file (credential rotation)
--   tsa-shaping              fire tsa_load_shaping_data
--   pool <name>              fire get_egress_pool
--   source <name>            fire get_egress_source
-- Every queue resolution continues to the ready queue: egress pool ->
-- egress source -> get_egress_path_config with the site name kumod derives.
-- Exit status: 0 when the policy loaded, 1 when loading it raised.

local harness_dir = arg[0]:match '^(.*)/[^/]*$' or '.'
package.path = table.concat({
  os.getenv 'HARNESS_POLICY_DIR' .. '/?.lua',
  harness_dir .. '/?.lua',
}, ';')

local json = require 'json'
local H = require 'recorder'
local kumo = require 'kumo'

local policy_file, mode = arg[1], arg[2]
local output = { ok = true, results = json.array {} }

local function first_handler(event)
  local list = H.handlers[event]
  if not list or #list == 0 then
    error('no handler registered for ' .. event, 0)
  end
  return list[1].fn
end

local function call_egress_events(queue_config)
  local pool = queue_config.egress_pool or 'unspecified'
  if pool == 'unspecified' then
    return 'unspecified', nil
  end
  local pool_config = first_handler('get_egress_pool')(pool)
  local source_name = pool_config.entries[1].name
  return source_name, first_handler('get_egress_source')(source_name)
end

-- What kumod computes for a scheduled queue, up to its ready queue
-- (crates/kumod/src/ready_queue.rs compute_queue_name/compute_config).
local function resolve_queue(domain, tenant, campaign, routing_domain)
  -- campaign:tenant@domain!routing_domain (docs/reference/queues.md)
  local result = {
    queue_name = (campaign and (campaign .. ':') or '')
      .. (tenant and (tenant .. '@') or '')
      .. domain
      .. (routing_domain and ('!' .. routing_domain) or ''),
  }
  -- kumod moves to the next handler only when one returns no value at all; a
  -- returned nil is converted and fails (crates/config/src/lib.rs).
  for _, handler in ipairs(H.handlers.get_queue_config or {}) do
    local returned = table.pack(handler.fn(domain, tenant, campaign, routing_domain))
    if returned.n > 0 then
      if returned[1] == nil then
        error('error converting Lua nil to QueueConfig (handler from ' .. handler.by .. ')', 0)
      end
      result.queue_config = returned[1]
      result.answered_by = handler.by
      break
    end
  end
  if not result.queue_config then
    error('no get_queue_config handler answered for ' .. domain, 0)
  end
  local protocol = result.queue_config.protocol
  local mx_list = protocol and protocol.smtp and protocol.smtp.mx_list
  if mx_list then
    local labels = {}
    for _, entry in ipairs(mx_list) do
      table.insert(labels, type(entry) == 'table' and entry.addr or entry)
    end
    result.site_name = 'mx_list:' .. table.concat(labels, ',')
  else
    result.site_name = kumo.dns.lookup_mx(routing_domain or domain).site_name
  end
  local source_name, source = call_egress_events(result.queue_config)
  result.egress_source = source_name
  result.egress_source_config = source
  result.egress_path = first_handler('get_egress_path_config')(routing_domain or domain, source_name, result.site_name)
  result.ready_queue = string.format('%s->%s@smtp_client', source_name, result.site_name)
  return result
end

local function new_message(recipient, headers)
  local meta = {}
  local domain = recipient:match '^.*@(.-)$'
  local msg = {}
  function msg:get_meta(key)
    return meta[key]
  end
  function msg:set_meta(key, value)
    meta[key] = value
  end
  function msg:get_first_named_header_value(name)
    for key, value in pairs(headers) do
      if key:lower() == name:lower() then
        return value
      end
    end
  end
  function msg:remove_all_named_headers(name)
    for key in pairs(headers) do
      if key:lower() == name:lower() then
        headers[key] = nil
      end
    end
  end
  function msg:recipient_list()
    return { { email = recipient, domain = domain } }
  end
  return msg, meta, domain
end

local STEPS = {
  init = { arity = 0, run = function()
    local event = mode == 'tsa' and 'tsa_init' or 'init'
    first_handler(event)()
    return { event = event }
  end },
  queue = { arity = 1, run = function(domain)
    return resolve_queue(domain, nil, nil, nil)
  end },
  rebound = { arity = 2, run = function(domain, routing_domain)
    return resolve_queue(domain, 'tilt', nil, routing_domain)
  end },
  message = { arity = 2, run = function(recipient, campaign)
    local headers = {}
    if campaign ~= '' then
      headers['X-Campaign'] = campaign
    end
    local msg, meta, domain = new_message(recipient, headers)
    first_handler('http_message_generated')(msg, { identities = {} })
    local result = resolve_queue(domain, meta.tenant, meta.campaign, meta.routing_domain)
    result.meta = meta
    result.headers = headers
    return result
  end },
  auth = { arity = 2, run = function(user, password)
    return { accepted = first_handler('http_server_validate_auth_basic')(user, password) }
  end },
  write = { arity = 2, run = function(path, content)
    local file = assert(io.open(path, 'wb'))
    file:write(content)
    file:close()
    return {}
  end },
  pool = { arity = 1, run = function(name)
    return first_handler('get_egress_pool')(name)
  end },
  source = { arity = 1, run = function(name)
    return first_handler('get_egress_source')(name)
  end },
  ['tsa-shaping'] = { arity = 0, run = function()
    local shaping = first_handler('tsa_load_shaping_data')()
    return { returned_shaping = type(shaping) == 'table' and shaping.get_egress_path_config ~= nil }
  end },
}

local loaded, load_error = pcall(dofile, policy_file)
if not loaded then
  output.ok = false
  output.error = tostring(load_error)
else
  local index = 3
  while index <= #arg do
    local name = arg[index]
    local step = STEPS[name]
    if not step then
      io.stderr:write('unknown step ' .. tostring(name) .. '\n')
      os.exit(2)
    end
    local args = table.move(arg, index + 1, index + step.arity, 1, json.array {})
    local ok, result = pcall(step.run, table.unpack(args, 1, step.arity))
    local entry = { step = name, args = args, ok = ok }
    if ok then
      entry.result = result
    else
      entry.error = type(result) == 'table' and result or tostring(result)
    end
    table.insert(output.results, entry)
    index = index + 1 + step.arity
  end
end

output.calls = H.calls
output.registrations = H.registrations
output.logs = H.logs
io.write(json.encode(output), '\n')
os.exit(output.ok and 0 or 1)
