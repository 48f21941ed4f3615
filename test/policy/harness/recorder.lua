-- A recording stand-in for the modules kumod and tsa-daemon give a policy:
-- `kumo`, `tsa`, and the policy-extras helpers (shaping, queue, sources).
--
-- It follows KumoMTA's documented API (docs/reference/kumo/*, events/*) and
-- the public shape of assets/policy-extras/*.lua at KumoCorp/kumomta 3ebc1e85:
-- the same option names, the same file lists, the same event registrations
-- and the same get_queue_config rule (the first handler that returns a value wins). Constructors
-- reject unknown keys and wrong types the way KumoMTA's serde layer does, so
-- a policy that passes a string where KumoMTA wants a number fails here too.
--
-- Filesystem: paths under /opt/kumomta/etc/policy/ are read from the
-- repository's policy/ directory (HARNESS_POLICY_DIR); /opt/kumomta/share/
-- paths must be files the KumoMTA image ships (their content is simulated,
-- see SHIPPED_DEFAULT and PROVIDERS).

local json = require 'json'
local toml = require 'toml'

local H = {
  calls = json.array {},
  registrations = json.array {},
  handlers = {},
  logs = json.array {},
}

local POLICY_MOUNT = '/opt/kumomta/etc/policy/'
local policy_dir = assert(os.getenv 'HARNESS_POLICY_DIR', 'HARNESS_POLICY_DIR must point at the repository policy/ dir')

-- Files in ghcr.io/kumocorp/kumomta under /opt/kumomta/share that a policy
-- may reference (reference/kumomta.md section 1).
local SHIPPED_FILES = {
  ['/opt/kumomta/share/policy-extras/shaping.toml'] = true,
  ['/opt/kumomta/share/community/shaping.toml'] = true,
  ['/opt/kumomta/share/bounce_classifier/iana.toml'] = true,
}

-- ["default"] of assets/policy-extras/shaping.toml.
local SHIPPED_DEFAULT = {
  connection_limit = 10,
  max_connection_rate = '100/min',
  max_deliveries_per_connection = 100,
  max_message_rate = '100/s',
  idle_timeout = '60s',
  data_timeout = '30s',
  data_dot_timeout = '60s',
  enable_tls = 'Opportunistic',
  consecutive_connection_failures_before_delay = 100,
  remember_broken_tls = '3 days',
}

-- What mx-dns answers (k8s/base/mx-dns/Corefile): provider-shaped MX hosts
-- for the big providers' domains, mx1.<domain> for every other domain.
local MX_DNS_HOSTS = {
  ['gmail.com'] = 'gmail-smtp-in.l.google.com',
  ['googlemail.com'] = 'gmail-smtp-in.l.google.com',
  ['yahoo.com'] = 'mta5.am0.yahoodns.net',
  ['aol.com'] = 'mta5.am0.yahoodns.net',
  ['ymail.com'] = 'mta5.am0.yahoodns.net',
  ['outlook.com'] = 'outlook-com.olc.protection.outlook.com',
  ['hotmail.com'] = 'hotmail-com.olc.protection.outlook.com',
  ['live.com'] = 'live-com.olc.protection.outlook.com',
}

-- Provider blocks of the shipped shaping.toml, matched the way KumoMTA does:
-- by the suffix of the domain's MX host.
local PROVIDERS = {
  google = {
    suffixes = { '.google.com', '.googlemail.com' },
    params = {
      enable_tls = 'Required',
      max_deliveries_per_connection = 50,
      consecutive_connection_failures_before_delay = 5,
    },
    provider_connection_limit = 5,
  },
  yahoo = {
    suffixes = { '.yahoodns.net' },
    params = { max_deliveries_per_connection = 20 },
  },
  outlook = {
    suffixes = { '.olc.protection.outlook.com' },
    params = { max_deliveries_per_connection = 50 },
    provider_connection_limit = 5,
  },
  orange = {
    suffixes = { '.orange.fr' },
    params = { enable_tls = 'Required', max_deliveries_per_connection = 100 },
    provider_connection_limit = 2,
  },
}

-- Set by kumo.dns.configure_resolver: until the policy points KumoMTA at
-- mx-dns, an MX lookup would go to the pod's DNS (and from there to the
-- internet), which the harness treats as an error.
local resolver = nil

local function mx_host(domain)
  if resolver == nil then
    error(string.format('MX lookup for %s before kumo.dns.configure_resolver pointed at mx-dns', domain), 0)
  end
  if domain:match '^%[' then
    return nil
  end
  return MX_DNS_HOSTS[domain] or ('mx1.' .. domain)
end

local function lookup_provider(domain)
  local host = mx_host(domain)
  if not host then
    return nil
  end
  for name, provider in pairs(PROVIDERS) do
    for _, suffix in ipairs(provider.suffixes) do
      if host:sub(-#suffix) == suffix then
        return name, provider
      end
    end
  end
end

local function deep_copy(value)
  if type(value) ~= 'table' then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = deep_copy(v)
  end
  return out
end

local function record(fn, args)
  table.insert(H.calls, { fn = fn, args = deep_copy(args) })
end

local function map_path(path)
  if type(path) ~= 'string' then
    error('expected a file path string, got ' .. type(path), 2)
  end
  if path:sub(1, #POLICY_MOUNT) == POLICY_MOUNT then
    return policy_dir .. '/' .. path:sub(#POLICY_MOUNT + 1)
  end
  if path:match '^/opt/kumomta/' then
    if SHIPPED_FILES[path] then
      return nil
    end
    error(string.format('%s: no such file in the KumoMTA image', path), 0)
  end
  return path
end

local function read_file(path)
  local real = map_path(path)
  local file, err = io.open(real, 'rb')
  if not file then
    error(string.format('failed to read %s: %s', path, err), 0)
  end
  local text = file:read 'a'
  file:close()
  return text
end

local function load_toml(path)
  return toml.parse(read_file(path), path)
end

-- Strict object checks ------------------------------------------------------

local function check_keys(what, params, allowed)
  if type(params) ~= 'table' then
    error(string.format('%s: expected a table, got %s', what, type(params)), 3)
  end
  for key in pairs(params) do
    if not allowed[key] then
      error(string.format('%s: unknown field `%s`', what, tostring(key)), 3)
    end
  end
end

local function set_of(list)
  local out = {}
  for _, item in ipairs(list) do
    out[item] = true
  end
  return out
end

local function check_integer(what, key, value, min, max)
  if value ~= nil and (math.type(value) ~= 'integer' or value < min or value > max) then
    local got = string.format('%s %s', math.type(value) or type(value), tostring(value))
    local expected = string.format('an integer in %d..%d', min, max)
    error(string.format('%s: invalid type for `%s`: expected %s, got %s', what, key, expected, got), 3)
  end
end

local function check_string(what, key, value)
  if value ~= nil and type(value) ~= 'string' then
    error(string.format('%s: invalid type for `%s`: expected a string, got %s', what, key, type(value)), 3)
  end
end

local HTTP_LISTENER_KEYS = set_of {
  'listen', 'use_tls', 'tls_certificate', 'tls_private_key', 'request_body_limit', 'trusted_hosts', 'hostname',
}

local TLS_MODES = set_of { 'Opportunistic', 'OpportunisticInsecure', 'Required', 'RequiredInsecure', 'Disabled' }

local EGRESS_PATH_KEYS = set_of {
  'additional_connection_limits', 'additional_message_rate_throttles', 'additional_source_selection_rates',
  'allow_smtp_auth_plain_without_tls', 'allow_smtp_auth_plain_without_valid_certificate', 'banner_timeout',
  'connect_timeout', 'connection_limit', 'consecutive_connection_failures_before_delay', 'data_dot_timeout',
  'data_timeout', 'dispatcher_progress_watchdog_timeout', 'dispatcher_wakeup_strategy', 'ehlo_domain',
  'ehlo_timeout', 'enable_dane', 'enable_mta_sts', 'enable_pipelining', 'enable_rset', 'enable_tls',
  'idle_timeout', 'ignore_8bit_checks', 'ip_lookup_strategy', 'low_memory_reduction_policy', 'mail_from_timeout',
  'maintainer_wakeup_strategy', 'max_connection_rate', 'max_deliveries_per_connection', 'max_message_rate',
  'max_ready', 'max_recipients_per_batch', 'no_memory_reduction_policy', 'openssl_cipher_list',
  'openssl_cipher_suites', 'openssl_options', 'opportunistic_tls_reconnect_on_failed_handshake',
  'prohibited_hosts', 'provider_name', 'rcpt_to_timeout', 'reconnect_strategy', 'refresh_interval',
  'refresh_strategy', 'remember_broken_tls', 'rset_timeout', 'rustls_cipher_suites', 'skip_hosts',
  'smtp_auth_plain_password', 'smtp_auth_plain_username', 'smtp_port', 'source_selection_rate',
  'starttls_timeout', 'system_shutdown_timeout', 'tls_certificate', 'tls_prefer_openssl', 'tls_private_key',
  'try_next_host_on_transport_error', 'use_lmtp',
}

local QUEUE_KEYS = set_of {
  'egress_pool', 'max_age', 'max_message_rate', 'max_retry_interval', 'protocol', 'provider_name',
  'reap_interval', 'refresh_interval', 'refresh_strategy', 'retry_interval', 'shrink_policy', 'strategy',
  'timerwheel_tick_interval',
}

local function check_mx_list(list)
  if type(list) ~= 'table' or #list == 0 then
    error('make_queue_config: protocol.smtp.mx_list must be a non-empty list', 4)
  end
  for _, entry in ipairs(list) do
    if type(entry) == 'table' then
      check_keys('make_queue_config: mx_list entry', entry, set_of { 'name', 'addr' })
    elseif type(entry) ~= 'string' then
      error('make_queue_config: mx_list entries are strings or {name, addr}', 4)
    end
  end
end

-- The kumo module -------------------------------------------------------------

local kumo = { shaping = {}, dns = {}, string = {}, serde = {} }

-- Events that accept several handlers; for every other event a later
-- kumo.on replaces the earlier handler (docs/reference/kumo/on.md).
local MULTI_HANDLER_EVENTS = set_of { 'get_queue_config' }

local current_registrar = 'policy'

local function register(event, fn)
  if type(event) ~= 'string' or type(fn) ~= 'function' then
    error('kumo.on(name, function) expected', 3)
  end
  local list = H.handlers[event] or {}
  -- kumod refuses a second handler for a one-handler event (crates/config).
  if not MULTI_HANDLER_EVENTS[event] and #list > 0 then
    error(string.format('%s event already has a handler defined by %s', event, list[1].by), 3)
  end
  table.insert(list, { fn = fn, by = current_registrar })
  H.handlers[event] = list
  table.insert(H.registrations, { event = event, by = current_registrar })
end

function kumo.on(event, fn)
  register(event, fn)
end

local function as(registrar, fn, ...)
  local previous = current_registrar
  current_registrar = registrar
  local results = table.pack(pcall(fn, ...))
  current_registrar = previous
  if not results[1] then
    error(results[2], 0)
  end
  return table.unpack(results, 2, results.n)
end

function kumo.start_http_listener(params)
  check_keys('start_http_listener', params, HTTP_LISTENER_KEYS)
  check_string('start_http_listener', 'listen', params.listen)
  check_integer('start_http_listener', 'request_body_limit', params.request_body_limit, 1, math.maxinteger)
  for _, host in ipairs(params.trusted_hosts or {}) do
    check_string('start_http_listener', 'trusted_hosts', host)
  end
  record('kumo.start_http_listener', params)
end

function kumo.define_spool(params)
  check_keys('define_spool', params, set_of {
    'name', 'path', 'kind', 'flush', 'rocks_params', 'min_free_space', 'min_free_inodes',
  })
  if params.kind ~= nil and params.kind ~= 'LocalDisk' and params.kind ~= 'RocksDB' then
    error('define_spool: kind must be LocalDisk or RocksDB', 2)
  end
  record('kumo.define_spool', params)
end

function kumo.configure_local_logs(params)
  if type(params) ~= 'table' or type(params.log_dir) ~= 'string' then
    error('configure_local_logs: log_dir is required', 2)
  end
  record('kumo.configure_local_logs', params)
end

function kumo.configure_bounce_classifier(params)
  check_keys('configure_bounce_classifier', params, set_of {
    'files', 'back_pressure', 'pool_size', 'cache_size', 'uncategorized_cache_size',
  })
  for _, file in ipairs(params.files or {}) do
    map_path(file)
  end
  record('kumo.configure_bounce_classifier', params)
end

local redis_configured = false
function kumo.configure_redis_throttles(params)
  if redis_configured then
    error('redis already configured for throttles', 2)
  end
  redis_configured = true
  -- kumod ignores unknown keys here silently (RedisConnKey has no deny_unknown_fields): catch typos ourselves.
  check_keys('configure_redis_throttles', params, set_of {
    'node', 'username', 'password', 'cluster', 'read_from_replicas', 'pool_size',
    'connect_timeout', 'recycle_timeout', 'wait_timeout', 'response_timeout',
  })
  local nodes = type(params.node) == 'table' and params.node or { params.node }
  for _, node in ipairs(nodes) do
    if type(node) ~= 'string' or not node:match '^rediss?://' then
      error('configure_redis_throttles: node must be a redis:// URL', 2)
    end
  end
  check_integer('configure_redis_throttles', 'pool_size', params.pool_size, 1, 100000)
  if params.connect_timeout ~= nil and not tostring(params.connect_timeout):match '^%d+%s*[a-z]+$' then
    error('configure_redis_throttles: connect_timeout must be a duration such as "5s"', 2)
  end
  record('kumo.configure_redis_throttles', params)
end

function kumo.configure_log_hook(params)
  record('kumo.configure_log_hook', params)
end

function kumo.spawn_task(params)
  record('kumo.spawn_task', params)
end

function kumo.memoize(fn, options)
  record('kumo.memoize', options)
  return fn
end

function kumo.make_egress_path(params)
  check_keys('make_egress_path', params, EGRESS_PATH_KEYS)
  if params.enable_tls ~= nil and not TLS_MODES[params.enable_tls] then
    error('make_egress_path: unknown enable_tls variant ' .. tostring(params.enable_tls), 2)
  end
  check_integer('make_egress_path', 'smtp_port', params.smtp_port, 1, 65535)
  local deliveries = params.max_deliveries_per_connection
  check_integer('make_egress_path', 'max_deliveries_per_connection', deliveries, 1, math.maxinteger)
  return setmetatable(deep_copy(params), { __name = 'EgressPathConfig' })
end

function kumo.make_queue_config(params)
  check_keys('make_queue_config', params, QUEUE_KEYS)
  for _, key in ipairs { 'egress_pool', 'max_age', 'retry_interval', 'max_retry_interval', 'provider_name' } do
    check_string('make_queue_config', key, params[key])
  end
  if params.protocol ~= nil then
    check_keys('make_queue_config: protocol', params.protocol, set_of { 'smtp', 'custom_lua', 'maildir' })
    if params.protocol.smtp then
      local smtp_keys = set_of { 'mx_list', 'treat_mx_list_as_secure' }
      check_keys('make_queue_config: protocol.smtp', params.protocol.smtp, smtp_keys)
      check_mx_list(params.protocol.smtp.mx_list)
    end
  end
  return setmetatable(deep_copy(params), { __name = 'QueueConfig' })
end

function kumo.make_egress_source(params)
  check_keys('make_egress_source', params, set_of {
    'name', 'source_address', 'ehlo_domain', 'remote_port', 'ha_proxy_server', 'ha_proxy_source_address',
    'socks5_proxy_server', 'socks5_proxy_source_address', 'suspend_when_proxy_unhealthy', 'suspend_when_unplumbed',
    'ttl',
  })
  check_string('make_egress_source', 'name', params.name)
  check_integer('make_egress_source', 'remote_port', params.remote_port, 1, 65535)
  return deep_copy(params)
end

function kumo.make_egress_pool(params)
  check_keys('make_egress_pool', params, set_of { 'name', 'entries', 'ttl' })
  for _, entry in ipairs(params.entries or {}) do
    check_keys('make_egress_pool: entry', entry, set_of { 'name', 'weight' })
    check_integer('make_egress_pool', 'weight', entry.weight, 0, math.maxinteger)
  end
  return deep_copy(params)
end

function kumo.toml_load(path)
  return load_toml(path)
end

function kumo.json_encode(value)
  return json.encode(value)
end
kumo.serde.json_encode = kumo.json_encode

function kumo.string.split(text, separator)
  local out = {}
  local start = 1
  while true do
    local first, last = text:find(separator, start, true)
    if not first then
      table.insert(out, text:sub(start))
      return out
    end
    table.insert(out, text:sub(start, first - 1))
    start = last + 1
  end
end

function kumo.reject(code, message)
  error({ rejected = true, code = code, message = message }, 0)
end

for _, level in ipairs { 'error', 'warn', 'info', 'debug' } do
  kumo['log_' .. level] = function(...)
    table.insert(H.logs, { level = level, message = table.concat({ ... }, ' ') })
  end
end

function kumo.dns.lookup_mx(domain)
  local host = mx_host(domain)
  if not host then
    error(string.format('MX lookup for %s failed: not a domain name', domain), 2)
  end
  return { hosts = { host }, site_name = host }
end

-- The pod's own DNS: it knows the cluster's Services (HARNESS_DNS=none: it
-- does not know mx-dns, as when the Service is missing).
function kumo.dns.lookup_addr(name)
  if os.getenv 'HARNESS_DNS' == 'none' or not name:match '%.svc%.' then
    error(string.format('no record found for Query { name: Name("%s."), query_type: A }', name), 2)
  end
  record('kumo.dns.lookup_addr', { name = name })
  -- A ClusterIP per Service name, as cluster DNS gives (mx-dns's is 10.96.0.53).
  if name:match '^mx%-dns%.' then
    return { '10.96.0.53' }
  end
  local hash = 0
  for i = 1, #name do
    hash = (hash * 31 + name:byte(i)) % 65000
  end
  return { string.format('10.96.%d.%d', 1 + hash // 250, 1 + hash % 250) }
end

function kumo.dns.configure_resolver(params)
  check_keys('kumo.dns.configure_resolver', params, set_of { 'name_servers', 'domain', 'search', 'options' })
  for _, server in ipairs(params.name_servers or {}) do
    if type(server) ~= 'string' or not server:match '^%[?[%x.:]+%]?:%d+$' then
      error('kumo.dns.configure_resolver: name_servers entries must be "IP:PORT"', 2)
    end
  end
  resolver = params
  record('kumo.dns.configure_resolver', params)
end

function kumo.invoke_get_egress_path_config(domain, source, site_name)
  local handler = H.handlers.get_egress_path_config and H.handlers.get_egress_path_config[1]
  if not handler then
    error('no get_egress_path_config handler', 2)
  end
  return handler.fn(domain, source, site_name)
end

-- kumo.shaping.load: records the file list and answers
-- get_egress_path_config with KumoMTA's merge order: default (every file)
-- -> matching provider -> domain block.
function kumo.shaping.load(files, options)
  if type(files) ~= 'table' or #files == 0 then
    error('kumo.shaping.load: expected a list of files', 2)
  end
  local loaded = { default = {}, domains = {}, shipped = false, remote_files = 0 }
  for _, file in ipairs(files) do
    if type(file) ~= 'string' then
      error('kumo.shaping.load: file names must be strings', 2)
    end
    -- Remote files (the TSA subscription) contribute nothing here:
    -- remote_load defaults to Ignore, as with an unreachable TSA.
    local remote = file:match '^https?://' ~= nil
    if remote then
      loaded.remote_files = loaded.remote_files + 1
    elseif map_path(file) == nil then
      if file == '/opt/kumomta/share/policy-extras/shaping.toml' then
        loaded.shipped = true
        for k, v in pairs(SHIPPED_DEFAULT) do
          loaded.default[k] = v
        end
      end
    else
      for block, params in pairs(load_toml(file)) do
        local target = block == 'default' and loaded.default or loaded.domains[block] or {}
        for k, v in pairs(params) do
          target[k] = v
        end
        if block ~= 'default' then
          loaded.domains[block] = target
        end
      end
    end
  end
  record('kumo.shaping.load', { files = files, options = options, remote_files = loaded.remote_files })

  local shaping = {}
  function shaping:get_egress_path_config(domain, egress_source, _site_name)
    local params = deep_copy(loaded.default)
    local name, provider = lookup_provider(domain)
    if provider and loaded.shipped then
      for k, v in pairs(provider.params) do
        params[k] = v
      end
      params.provider_name = name
      if provider.provider_connection_limit then
        params.additional_connection_limits = {
          [string.format('shaping-provider-%s-%s-limit', name, egress_source)] = provider.provider_connection_limit,
        }
      end
    end
    for k, v in pairs(loaded.domains[domain] or {}) do
      params[k] = v
    end
    return params
  end
  function shaping:get_errors()
    return {}
  end
  function shaping:get_warnings()
    return {}
  end
  return shaping
end

-- policy-extras.shaping -------------------------------------------------------

local shaping_module = {}

function shaping_module:setup_with_automation(options)
  return as('policy-extras.shaping', function()
    if shaping_module.CONFIGURED then
      error('shaping module has already been configured', 0)
    end
    record('shaping:setup_with_automation', options)
    local file_names = {}
    if not options.no_default_files then
      table.insert(file_names, '/opt/kumomta/share/policy-extras/shaping.toml')
    end
    for _, file in ipairs(options.extra_files or {}) do
      table.insert(file_names, file)
    end
    for _, url in ipairs(options.subscribe or {}) do
      table.insert(file_names, url .. '/get_config_v1/shaping.toml')
    end

    local publish = {}
    for _, destination in ipairs(options.publish or {}) do
      local hook_name = destination .. '.tsa.kumomta'
      publish[hook_name] = { endpoint = destination, constructor = 'make.' .. hook_name }
      register('make.' .. hook_name, function()
        return { publisher_for = destination }
      end)
    end

    register('get_queue_config', function(domain)
      local hook = publish[domain]
      if hook then
        return kumo.make_queue_config {
          retry_interval = '1m',
          max_retry_interval = '20m',
          protocol = { custom_lua = { constructor = hook.constructor } },
        }
      end
    end)
    register('should_enqueue_log_record', function(_msg, hook_name)
      return publish[hook_name] ~= nil
    end)

    local configured = { _file_names = file_names }
    function configured.setup_publish()
      for hook_name in pairs(publish) do
        kumo.configure_log_hook { name = hook_name }
      end
      for _, url in ipairs(options.subscribe or {}) do
        kumo.spawn_task { event_name = 'kumo.tsa.suspension.subscriber', args = { url } }
      end
    end
    function configured.load_shaping_data()
      return kumo.shaping.load(file_names, options.load_validation_options)
    end
    function configured.get_egress_path_config(domain, egress_source, site_name, skip_make)
      local params = configured.load_shaping_data():get_egress_path_config(domain, egress_source, site_name)
      if not params.refresh_strategy then
        params.refresh_strategy = 'Epoch'
      end
      if skip_make then
        return params
      end
      return kumo.make_egress_path(params)
    end
    shaping_module.CONFIGURED = configured
    return configured
  end)
end

function shaping_module:setup(extra_files)
  return self:setup_with_automation({ extra_files = extra_files, publish = {}, subscribe = {} }).get_egress_path_config
end

-- policy-extras.queue ---------------------------------------------------------

local queue_module = {}

local function is_queue_config_option(key, value)
  return (pcall(kumo.make_queue_config, { [key] = value }))
end

local function load_queue_data(file_names)
  local data = { tenants = {}, queues = {}, options = {} }
  for _, file in ipairs(file_names) do
    local parsed = type(file) == 'table' and file or load_toml(file)
    for key, value in pairs(parsed) do
      if key == 'tenant' then
        for name, params in pairs(value) do
          data.tenants[name] = data.tenants[name] or {}
          for k, v in pairs(params) do
            data.tenants[name][k] = v
          end
        end
      elseif key == 'queue' then
        for domain, params in pairs(value) do
          local entry = data.queues[domain] or { options = {}, tenants = {} }
          for k, v in pairs(params) do
            if is_queue_config_option(k, v) or type(v) ~= 'table' then
              entry.options[k] = v
            else
              entry.tenants[k] = v
            end
          end
          data.queues[domain] = entry
        end
      else
        data.options[key] = value
      end
    end
  end
  return data
end

local function merge_options(params, source)
  for k, v in pairs(source or {}) do
    if is_queue_config_option(k, v) then
      params[k] = deep_copy(v)
    end
  end
end

local function resolve_config(data, domain, tenant, campaign)
  local params = { refresh_strategy = 'Epoch' }
  merge_options(params, data.queues.default and data.queues.default.options)
  local domain_entry = data.queues[domain]
  merge_options(params, domain_entry and domain_entry.options)
  merge_options(params, data.tenants[tenant])
  if domain_entry and domain_entry.tenants[tenant] then
    local tenant_entry = domain_entry.tenants[tenant]
    merge_options(params, tenant_entry)
    if campaign and type(tenant_entry[campaign]) == 'table' then
      merge_options(params, tenant_entry[campaign])
    end
  end
  return params
end

function queue_module:resolve_provider(domain, routing_domain)
  local ok, provider = pcall(function()
    local target = routing_domain or domain
    local mx = kumo.dns.lookup_mx(target)
    return kumo.invoke_get_egress_path_config(target, 'unspecified', mx.site_name).provider_name
  end)
  if ok then
    return provider
  end
  return nil
end

function queue_module:setup(file_names)
  return self:setup_with_options { skip_queue_config_hook = false, file_names = file_names }
end

function queue_module:setup_with_options(options)
  return as('policy-extras.queue', function()
    if queue_module.CONFIGURED then
      error('queues module has already been configured', 0)
    end
    record('queue:setup_with_options', options)
    local data = load_queue_data(options.file_names)
    local helper = {}
    function helper:resolve_config(domain, tenant, campaign)
      return resolve_config(data, domain, tenant, campaign)
    end
    function helper:apply(msg)
      local campaign_header = data.options.campaign_header
      if campaign_header then
        local campaign = msg:get_first_named_header_value(campaign_header)
        if campaign then
          msg:set_meta('campaign', campaign)
          if data.options.remove_campaign_header then
            msg:remove_all_named_headers(campaign_header)
          end
        end
      end
      local tenant = data.options.default_tenant
      if data.options.tenant_header then
        tenant = msg:get_first_named_header_value(data.options.tenant_header) or tenant
      end
      if tenant then
        if not data.tenants[tenant] then
          kumo.reject(500, string.format("tenant '%s' is not defined in your queue config", tenant))
        end
        msg:set_meta('tenant', tenant)
      end
      local recipient = msg:recipient_list()[1]
      local domain_entry = data.queues[recipient.domain]
      if domain_entry and domain_entry.options.routing_domain then
        msg:set_meta('routing_domain', domain_entry.options.routing_domain)
      end
    end
    if not options.skip_queue_config_hook then
      register('get_queue_config', function(domain, tenant, campaign, routing_domain)
        local params = resolve_config(data, domain, tenant, campaign)
        if params.provider_name == nil then
          params.provider_name = queue_module:resolve_provider(domain, routing_domain)
        end
        return kumo.make_queue_config(params)
      end)
    end
    register('throttle_insert_ready_queue', function() end)
    queue_module.CONFIGURED = { options = options }
    return helper
  end)
end

-- tsa ---------------------------------------------------------------------------

local tsa = {}
local tsa_listener_started = false

function tsa.configure_tsa_db_path(path)
  if tsa_listener_started then
    error('configure_tsa_db_path must be called before tsa.start_http_listener', 2)
  end
  check_string('configure_tsa_db_path', 'path', path)
  record('tsa.configure_tsa_db_path', { path = path })
end

function tsa.start_http_listener(params)
  check_keys('tsa.start_http_listener', params, HTTP_LISTENER_KEYS)
  tsa_listener_started = true
  record('tsa.start_http_listener', params)
end

package.preload['kumo'] = function()
  return kumo
end
package.preload['tsa'] = function()
  return tsa
end
package.preload['policy-extras.shaping'] = function()
  return shaping_module
end
package.preload['policy-extras.queue'] = function()
  return queue_module
end

return H
