-- Egress through KumoProxy (k8s/components/proxy): which sources of
-- sources.toml are in service, and the proxy address of each.
--
-- kumod fixes a ready queue's egress source when it creates the queue and
-- keeps it until the queue has been idle for ten minutes
-- (crates/kumod/src/ready_queue.rs), and the pinned release takes
-- socks5_proxy_server as an IP address only
-- (docs/reference/kumo/make_egress_source/socks5_proxy_server.md). A proxy
-- pod's IP changes whenever the pod is replaced, so kumod never dials it:
-- each proxy pod has its own Service, named like the pod, whose ClusterIP
-- lasts as long as the Service, and Kubernetes moves that address to the
-- replacement pod. While no proxy-N pod is Ready the Service refuses
-- connections; kumod defers those messages and retries them by
-- queues.toml, through whichever source the pool picks then.

local kumo = require 'kumo'

local mod = {}

local PROXY_SOURCE = '^proxy%-(%d+)$'

-- True when the pool may pick `source_name`: with the proxy component, the
-- proxy-N sources whose pod exists; without it, only the direct source.
function mod.in_service(source_name, proxies)
  local ordinal = source_name:match(PROXY_SOURCE)
  if proxies == nil then
    return ordinal == nil
  end
  return ordinal ~= nil and tonumber(ordinal) < proxies.replicas
end

-- The source's parameters with the proxy's address added; `lookup` resolves
-- a Service name to a list of addresses.
function mod.source_params(params, proxies, lookup)
  local ordinal = params.name:match(PROXY_SOURCE)
  if ordinal == nil then
    return params
  end
  local service = proxies.service(tonumber(ordinal))
  local ok, addresses = pcall(lookup, service)
  if not ok or type(addresses) ~= 'table' or #addresses == 0 then
    error(
      string.format(
        'kumomta-tilt policy: cannot resolve %s for egress source %s (%s); is the proxy component deployed?',
        service,
        params.name,
        tostring(addresses)
      ),
      0
    )
  end
  local address = addresses[1]
  local result = {}
  for k, v in pairs(params) do
    result[k] = v
  end
  if address:find(':', 1, true) then
    result.socks5_proxy_server = string.format('[%s]:%d', address, proxies.port)
    result.socks5_proxy_source_address = '::'
  else
    result.socks5_proxy_server = string.format('%s:%d', address, proxies.port)
    -- The pod has one address besides loopback: binding the unspecified
    -- address makes the proxy connect from it, whichever it is today.
    result.socks5_proxy_source_address = '0.0.0.0'
  end
  return result
end

-- sources.toml, in the sources helper's format: { source = { name = params },
-- pool = { name = { source = { weight = N } } } }. The helper itself cannot be
-- used: it registers get_egress_source and get_egress_pool, and kumod allows
-- one handler per event.
local function load_sources(file)
  local data = kumo.toml_load(file)
  local sources, pools = {}, {}
  for name, params in pairs(data.source or {}) do
    local source = { name = name }
    for k, v in pairs(params) do
      source[k] = v
    end
    sources[name] = source
  end
  for name, members in pairs(data.pool or {}) do
    local entries = {}
    for source, params in pairs(members) do
      if sources[source] == nil then
        error(
          string.format(
            'kumomta-tilt policy: %s: pool %s lists %s, which has no [source."%s"]',
            file,
            name,
            source,
            source
          ),
          0
        )
      end
      table.insert(entries, { name = source, weight = params.weight })
    end
    pools[name] = entries
  end
  return { sources = sources, pools = pools }
end

function mod.setup(sources_file, proxies)
  local data = kumo.memoize(load_sources, { name = 'tilt_egress_sources', ttl = '5 minutes', capacity = 1 })

  kumo.on('get_egress_source', function(source_name)
    local params = data(sources_file).sources[source_name]
    if params == nil then
      error(string.format("kumomta-tilt policy: egress source '%s' is not in %s", source_name, sources_file), 0)
    end
    return kumo.make_egress_source(mod.source_params(params, proxies, kumo.dns.lookup_addr))
  end)

  kumo.on('get_egress_pool', function(pool_name)
    local pool = data(sources_file).pools[pool_name]
    if pool == nil then
      error(string.format("kumomta-tilt policy: egress pool '%s' is not in %s", pool_name, sources_file), 0)
    end
    local entries = {}
    for _, entry in ipairs(pool) do
      if mod.in_service(entry.name, proxies) then
        table.insert(entries, entry)
      end
    end
    if #entries == 0 then
      error(
        string.format(
          'kumomta-tilt policy: no source of egress pool %s is in service (%s)',
          pool_name,
          proxies and string.format('%d proxies', proxies.replicas) or 'no proxy component'
        ),
        0
      )
    end
    return kumo.make_egress_pool { name = pool_name, entries = entries }
  end)
end

return mod
