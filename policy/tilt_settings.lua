-- Settings shared by init.lua (kumod) and tsa_init.lua (tsa-daemon).
--
-- Every value the Kubernetes manifests hand to the policy arrives as an
-- environment string. This module turns those strings into the values KumoMTA
-- expects (numbers as numbers, strict CIDRs, FQDNs) and raises an error naming
-- the variable and the fix when one is wrong: a bad deployment then stops at
-- startup (CrashLoopBackOff with a readable log line) instead of running with
-- a half-valid configuration.
--
-- Pure logic: callers pass a getenv function, so nothing here touches the
-- process or the filesystem.

local mod = {}

-- The shaping files kumod and tsa-daemon must agree on (tsa_load_shaping_data
-- documentation). The shaping helper always loads the first one itself unless
-- told otherwise; KumoMTA never loads the community file on its own.
mod.SHIPPED_SHAPING_FILE = '/opt/kumomta/share/policy-extras/shaping.toml'
mod.EXTRA_SHAPING_FILES = {
  '/opt/kumomta/share/community/shaping.toml',
  '/opt/kumomta/etc/policy/shaping.toml',
}

function mod.all_shaping_files()
  local files = { mod.SHIPPED_SHAPING_FILE }
  for _, file in ipairs(mod.EXTRA_SHAPING_FILES) do
    table.insert(files, file)
  end
  return files
end

local LOOPBACK = { '127.0.0.1', '::1' }
local SINK_TLS_MODES = { Disabled = true, OpportunisticInsecure = true }
local MAX_TSA_REPLICAS = 64
-- sources.toml lists proxy-0..proxy-3, and k8s/components/proxy has a
-- Service for each of those pods.
mod.MAX_PROXIES = 4

local function fail(name, value, reason)
  error(
    string.format('kumomta-tilt policy: %s=%q is invalid: %s', name, value, reason),
    0
  )
end

local function reader(getenv)
  local env = {}

  -- Empty and unset are the same thing: Kubernetes renders an optional
  -- variable with no value as an empty string.
  function env.optional(name, default)
    local value = getenv(name)
    if value == nil or value == '' then
      return default
    end
    return value
  end

  function env.required(name, hint)
    local value = env.optional(name)
    if value == nil then
      error(
        string.format('kumomta-tilt policy: %s is not set; %s', name, hint),
        0
      )
    end
    return value
  end

  -- tonumber alone accepts ' 3', '0x3', '3.0' and '1e1'; only plain decimal
  -- digits are a valid replica count or port here.
  function env.integer(name, raw, min, max)
    if not raw:match '^%d+$' then
      fail(name, raw, string.format('expected a whole number between %d and %d', min, max))
    end
    local value = math.tointeger(tonumber(raw))
    if value == nil or value < min or value > max then
      fail(name, raw, string.format('expected a whole number between %d and %d', min, max))
    end
    return value
  end

  -- A Kubernetes object name that is also one DNS label (RFC 1123).
  function env.dns_label(name, raw)
    if #raw > 63 or not raw:match '^[a-z0-9][-a-z0-9]*$' or raw:match '%-$' then
      fail(name, raw, 'expected a lowercase DNS label (a-z, 0-9, "-"), as Kubernetes names Services and namespaces')
    end
    return raw
  end

  function env.dns_name(name, raw)
    for label in (raw .. '.'):gmatch '([^.]*)%.' do
      env.dns_label(name, label)
    end
    return raw
  end

  return env
end

local function parse_ipv4(text)
  local a, b, c, d = text:match '^(%d+)%.(%d+)%.(%d+)%.(%d+)$'
  if not a then
    return nil
  end
  local value = 0
  for _, octet in ipairs { a, b, c, d } do
    local n = tonumber(octet)
    if n > 255 or (#octet > 1 and octet:sub(1, 1) == '0') then
      return nil
    end
    value = value * 256 + n
  end
  return { bits = 32, words = { value }, word_bits = 32 }
end

local function parse_ipv6(text)
  if not text:match '^[%x:]+$' then
    return nil
  end
  local function groups_of(part)
    local groups = {}
    if part == '' then
      return groups
    end
    for group in (part .. ':'):gmatch '([^:]*):' do
      if not group:match '^%x%x?%x?%x?$' then
        return nil
      end
      table.insert(groups, tonumber(group, 16))
    end
    return groups
  end
  local head, tail = text:match '^(.-)::(.*)$'
  local words
  if head then
    if tail:find('::', 1, true) then
      return nil
    end
    local left, right = groups_of(head), groups_of(tail)
    if not left or not right or #left + #right > 7 then
      return nil
    end
    words = left
    for _ = 1, 8 - #left - #right do
      table.insert(words, 0)
    end
    for _, word in ipairs(right) do
      table.insert(words, word)
    end
  else
    words = groups_of(text)
    if not words or #words ~= 8 then
      return nil
    end
  end
  return { bits = 128, words = words, word_bits = 16 }
end

local function is_zero(address)
  for _, word in ipairs(address.words) do
    if word ~= 0 then
      return false
    end
  end
  return true
end

-- True when every bit after the prefix is zero: KumoMTA's cidr-map rejects
-- "192.168.1.1/24" rather than masking it, so we refuse it here with a
-- clearer message.
local function host_bits_clear(address, prefix)
  for index, word in ipairs(address.words) do
    local first_bit = (index - 1) * address.word_bits
    local keep = math.max(0, math.min(address.word_bits, prefix - first_bit))
    local host_mask = (1 << (address.word_bits - keep)) - 1
    if word & host_mask ~= 0 then
      return false
    end
  end
  return true
end

local function validate_trusted_entry(name, entry)
  local ip, prefix = entry:match '^([^/]+)/(%d+)$'
  ip = ip or entry
  local address = parse_ipv4(ip) or parse_ipv6(ip)
  if not address then
    fail(name, entry, 'not an IPv4/IPv6 address or strict CIDR such as 10.0.0.0/8 or fd00::/8')
  end
  if not prefix then
    if is_zero(address) then
      fail(name, entry, 'the unspecified address is one host to KumoMTA, not "everyone"; list the pod network CIDRs')
    end
    return
  end
  local bits = tonumber(prefix)
  if bits == 0 then
    fail(name, entry, 'a /0 network would give the whole internet admin and metrics access; list the pod network CIDRs')
  end
  if bits > address.bits then
    fail(name, entry, string.format('prefix length must be 1..%d', address.bits))
  end
  if not host_bits_clear(address, bits) then
    fail(name, entry, 'host bits set after the prefix; KumoMTA takes only strict CIDRs (192.168.1.0/24, not .1/24)')
  end
end

-- Loopback plus the comma-separated KUMO_TRUSTED_HOSTS, validated.
function mod.trusted_hosts(raw)
  local hosts = {}
  local seen = {}
  local function add(host)
    if not seen[host] then
      seen[host] = true
      table.insert(hosts, host)
    end
  end
  for _, host in ipairs(LOOPBACK) do
    add(host)
  end
  for entry in ((raw or '') .. ','):gmatch '([^,]*),' do
    entry = entry:match '^%s*(.-)%s*$'
    if entry ~= '' then
      validate_trusted_entry('KUMO_TRUSTED_HOSTS', entry)
      add(entry)
    end
  end
  return hosts
end

local function service_fqdn(service, namespace, cluster_domain)
  return string.format('%s.%s.svc.%s', service, namespace, cluster_domain)
end

-- Everything kumod's policy needs, derived from its environment.
function mod.kumod(getenv)
  local env = reader(getenv)
  local overlay_hint = 'the kumod StatefulSet sets it (k8s overlay replacements)'

  local namespace = env.dns_label(
    'POD_NAMESPACE',
    env.required('POD_NAMESPACE', 'the kumod StatefulSet sets it from the downward API (metadata.namespace)')
  )
  local cluster_domain = env.dns_name('CLUSTER_DOMAIN', env.optional('CLUSTER_DOMAIN', 'cluster.local'))

  local tsa_sts = env.dns_label('TSA_STS', env.required('TSA_STS', overlay_hint))
  local tsa_headless = env.dns_label('TSA_HEADLESS', env.required('TSA_HEADLESS', overlay_hint))
  local tsa_service = env.dns_label('TSA_SERVICE', env.required('TSA_SERVICE', overlay_hint))
  local tsa_replicas = env.integer('TSA_REPLICAS', env.required('TSA_REPLICAS', overlay_hint), 1, MAX_TSA_REPLICAS)
  local tsa_port = env.integer('TSA_PORT', env.optional('TSA_PORT', '8008'), 1, 65535)

  local tsa_publish = {}
  for ordinal = 0, tsa_replicas - 1 do
    -- One URL per pod: TSA replicas share no state, so every kumod must
    -- publish its delivery logs to each of them (StatefulSet pod DNS names
    -- through the headless Service).
    local pod_host =
      string.format('%s-%d.%s', tsa_sts, ordinal, service_fqdn(tsa_headless, namespace, cluster_domain))
    table.insert(tsa_publish, string.format('http://%s:%d', pod_host, tsa_port))
  end

  local sink_service = env.dns_label('SINK_SERVICE', env.optional('SINK_SERVICE', 'sink'))
  local sink_host = service_fqdn(sink_service, namespace, cluster_domain)
  local sink_port = env.integer('SINK_SMTP_PORT', env.optional('SINK_SMTP_PORT', '2525'), 1, 65535)
  -- "google=2526,yahoo=2527": the sink's port for each provider site, keyed
  -- by the provider names of KumoMTA's shaping files.
  local site_ports = {}
  local raw_site_ports = env.optional('SINK_SITE_PORTS', '')
  for entry in (raw_site_ports .. ','):gmatch '([^,]*),' do
    entry = entry:match '^%s*(.-)%s*$'
    if entry ~= '' then
      local site, port = entry:match '^([^=]+)=(.*)$'
      if not site then
        fail('SINK_SITE_PORTS', raw_site_ports, 'expected comma-separated site=port entries such as google=2526')
      end
      site = env.dns_label('SINK_SITE_PORTS', site)
      if site_ports[site] then
        fail('SINK_SITE_PORTS', raw_site_ports, string.format('site %s is listed twice', site))
      end
      site_ports[site] = env.integer('SINK_SITE_PORTS', port, 1, 65535)
    end
  end
  local sink_tls = env.optional('SINK_TLS', 'Disabled')
  if not SINK_TLS_MODES[sink_tls] then
    fail('SINK_TLS', sink_tls, 'expected Disabled or OpportunisticInsecure (the sink has no certificate kumod trusts)')
  end

  local mx_dns_service = env.dns_label('MX_DNS_SERVICE', env.optional('MX_DNS_SERVICE', 'mx-dns'))
  local dragonfly_service = env.dns_label('DRAGONFLY_SERVICE', env.optional('DRAGONFLY_SERVICE', 'dragonfly'))
  local dragonfly_host = service_fqdn(dragonfly_service, namespace, cluster_domain)
  local dragonfly_port = env.integer('DRAGONFLY_PORT', env.optional('DRAGONFLY_PORT', '6379'), 1, 65535)
  local dragonfly_password =
    env.required('DRAGONFLY_PASSWORD', 'it comes from the dragonfly-auth Secret (run `npm run seed`)')

  -- KumoProxy egress, when k8s/components/proxy is deployed: it sets
  -- PROXY_REPLICAS (from the proxy StatefulSet, by overlay replacement).
  local proxies
  local proxy_replicas = env.optional('PROXY_REPLICAS')
  if proxy_replicas ~= nil then
    local component_hint = 'k8s/components/proxy sets it with PROXY_REPLICAS'
    local proxy_sts = env.dns_label('PROXY_STS', env.required('PROXY_STS', component_hint))
    proxies = {
      replicas = env.integer('PROXY_REPLICAS', proxy_replicas, 1, mod.MAX_PROXIES),
      port = env.integer('PROXY_PORT', env.required('PROXY_PORT', component_hint), 1, 65535),
      -- Each proxy pod's own Service, named like the pod.
      service = function(ordinal)
        return service_fqdn(string.format('%s-%d', proxy_sts, ordinal), namespace, cluster_domain)
      end,
    }
  end

  return {
    trusted_hosts = mod.trusted_hosts(env.optional('KUMO_TRUSTED_HOSTS')),
    http_auth_dir = env.optional('KUMO_HTTP_AUTH_DIR', '/opt/kumomta/etc/http-auth'),
    proxies = proxies,
    tsa_publish = tsa_publish,
    tsa_subscribe = { string.format('http://%s:%d', service_fqdn(tsa_service, namespace, cluster_domain), tsa_port) },
    mx_dns = service_fqdn(mx_dns_service, namespace, cluster_domain),
    sink = {
      port = sink_port,
      site_ports = site_ports,
      -- Only for IP-literal domains, which no MX lookup routes; the port
      -- travels inside the mx_list entry (2025.10.06+).
      mx = string.format('%s:%d', sink_host, sink_port),
      tls = sink_tls,
    },
    -- The password travels in its own field, never in the URL: kumod labels its redis_* metrics with the node
    -- string (crates/mod-redis, RedisConnKey::hash_label), so a password in it would be published on /metrics.
    redis = {
      node = string.format('redis://%s:%d', dragonfly_host, dragonfly_port),
      password = dragonfly_password,
    },
  }
end

-- Everything proxy_init.lua needs.
function mod.proxy(getenv)
  local env = reader(getenv)
  return { trusted_hosts = mod.trusted_hosts(env.optional('KUMO_TRUSTED_HOSTS')) }
end

-- Everything tsa_init.lua needs.
function mod.tsa(getenv)
  local env = reader(getenv)
  local namespace = env.dns_label(
    'POD_NAMESPACE',
    env.required('POD_NAMESPACE', 'the tsa StatefulSet sets it from the downward API (metadata.namespace)')
  )
  local cluster_domain = env.dns_name('CLUSTER_DOMAIN', env.optional('CLUSTER_DOMAIN', 'cluster.local'))
  local mx_dns_service = env.dns_label('MX_DNS_SERVICE', env.optional('MX_DNS_SERVICE', 'mx-dns'))
  return {
    mx_dns = service_fqdn(mx_dns_service, namespace, cluster_domain),
    trusted_hosts = mod.trusted_hosts(env.optional('KUMO_TRUSTED_HOSTS')),
    state_dir = env.optional('TSA_STATE_DIR', '/var/lib/tsa'),
  }
end

return mod
