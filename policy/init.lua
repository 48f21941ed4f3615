-- kumod policy for kumomta-tilt: KumoMTA's "many nodes" layout on a local
-- Kubernetes cluster, where every message is delivered to the in-cluster
-- null sink and never to the internet.
--
-- kumod runs this file's top level each time it builds a Lua context (at
-- startup and again when the policy is reloaded), so the top level only reads
-- the environment and sets up the policy-extras helpers, as KumoMTA's
-- examples do. One-time work lives in the `init` handler.
--
-- Environment: see tilt_settings.lua and docs/policy.md.

local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local queue_module = require 'policy-extras.queue'
local settings = require 'tilt_settings'
local auth = require 'tilt_auth'
local dns = require 'tilt_dns'
local egress = require 'tilt_egress'

local POLICY_DIR = '/opt/kumomta/etc/policy'
local SPOOL_DIR = '/var/spool/kumomta'
local LOG_DIR = '/var/log/kumomta'
local IANA_BOUNCE_RULES = '/opt/kumomta/share/bounce_classifier/iana.toml'
-- Stated rather than defaulted: with 3 kumod pods this is Dragonfly's
-- connection budget (30), which its memory limit is sized for.
local REDIS_POOL_SIZE = 10
-- Without a connect timeout kumod waits for an unreachable Dragonfly
-- forever, logging nothing; with one, init fails and kumod exits.
local REDIS_CONNECT_TIMEOUT = '5s'

local config = settings.kumod(os.getenv)

-- Egress sources and pool from sources.toml, with the proxies' addresses.
egress.setup(POLICY_DIR .. '/sources.toml', config.proxies)

-- TSA automation: every kumod publishes delivery logs to every tsa-daemon
-- pod and reads the merged result (suspensions, SetConfig actions) back
-- through the ClusterIP Service.
local shaper = shaping:setup_with_automation {
  publish = config.tsa_publish,
  subscribe = config.tsa_subscribe,
  extra_files = settings.EXTRA_SHAPING_FILES,
}

-- Every destination is the sink: mx-dns resolves each domain's MX hosts to
-- it, so kumod routes, names sites and matches provider rules as against the
-- real providers. The connection itself is the sink's: it listens on a port
-- per provider site (so it greets and throttles as that provider) and offers
-- no certificate kumod would trust, so its TLS mode and port win over
-- provider rules (Google's enable_tls = "Required") and TSA actions.
-- MTA-STS and DANE are off: they cannot be satisfied by the sink, and mx-dns
-- answers neither (docs/policy.md).
local function sink_egress_path(routing_domain, egress_source, site_name)
  local params = shaper.get_egress_path_config(routing_domain, egress_source, site_name, true)
  params.enable_tls = config.sink.tls
  params.enable_mta_sts = false
  params.enable_dane = false
  params.smtp_port = config.sink.site_ports[params.provider_name] or config.sink.port
  return kumo.make_egress_path(params)
end

-- An IP-literal domain ([10.1.2.3]) is routed by no MX lookup; kumod would
-- connect to that address. Here it goes to the sink like everything else.
-- Registered after the shaping helper (so TSA publish queues keep their own
-- config) and before the queue helper, whose hook answers every other domain:
-- get_queue_config handlers run in order and the first that returns a value
-- wins.
local queue_helper
local function ip_literal_queue_config(domain, tenant, campaign, routing_domain)
  if not (routing_domain or domain):match '^%[.*%]$' then
    -- No value at all, not nil: kumod passes to the next handler only when a
    -- handler returns nothing (crates/config/src/lib.rs, CallbackSignature::call).
    return
  end
  local params = queue_helper:resolve_config(domain, tenant, campaign) or {}
  params.protocol = { smtp = { mx_list = { config.sink.mx } } }
  return kumo.make_queue_config(params)
end

kumo.on('get_queue_config', ip_literal_queue_config)

-- The queue helper comes after the shaping helper, as KumoMTA requires
-- (docs/userguide/configuration/example.md): its get_queue_config hook
-- always answers, so it must be the last one.
queue_helper = queue_module:setup { POLICY_DIR .. '/queues.toml' }

kumo.on('get_egress_path_config', sink_egress_path)

-- Shared throttles in Dragonfly, or a start-up failure that says why: kumod
-- reports an unreachable server and a wrong password alike as a timeout.
local function configure_dragonfly_throttles()
  local ok, err = pcall(kumo.configure_redis_throttles, {
    node = config.redis.node,
    password = config.redis.password,
    pool_size = REDIS_POOL_SIZE,
    connect_timeout = REDIS_CONNECT_TIMEOUT,
  })
  if not ok then
    local reason = tostring(err):gsub(config.redis.password:gsub('%p', '%%%0'), '<password>')
    error(
      string.format(
        'kumomta-tilt policy: Dragonfly at %s did not accept a connection within %s (%s); '
          .. 'is the dragonfly pod Ready, and does DRAGONFLY_PASSWORD match the dragonfly-auth Secret it uses?',
        config.redis.node,
        REDIS_CONNECT_TIMEOUT,
        reason
      ),
      0
    )
  end
end

kumo.on('init', function()
  dns.use(config.mx_dns)
  kumo.define_spool { name = 'data', path = SPOOL_DIR .. '/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = SPOOL_DIR .. '/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = LOG_DIR }
  kumo.configure_bounce_classifier { files = { IANA_BOUNCE_RULES } }
  configure_dragonfly_throttles()
  -- Fail at startup, not on the first request, if the Secret is not mounted.
  auth.read_credentials(config.http_auth_dir)
  kumo.start_http_listener { listen = '0.0.0.0:8000', trusted_hosts = config.trusted_hosts }
  shaper.setup_publish()
end)

kumo.on('http_server_validate_auth_basic', function(user, password)
  return auth.validate(config.http_auth_dir, user, password)
end)

kumo.on('http_message_generated', function(msg)
  queue_helper:apply(msg)
end)
