-- tsa-daemon policy for kumomta-tilt (started with
-- `tsa-daemon --policy /opt/kumomta/etc/policy/tsa_init.lua`).
--
-- tsa-daemon receives every kumod pod's delivery logs, applies the
-- automation rules of the shaping files and serves the resulting
-- suspensions and config overrides back to kumod.

local kumo = require 'kumo'
local tsa = require 'tsa'
local settings = require 'tilt_settings'
local dns = require 'tilt_dns'

local config = settings.tsa(os.getenv)
local SHAPING_FILES = settings.all_shaping_files()

-- tsa-daemon calls tsa_load_shaping_data whenever it evaluates a log record;
-- the cache keeps that from re-reading three files each time.
local cached_load_shaping_data = kumo.memoize(kumo.shaping.load, {
  name = 'tsa_load_shaping_data',
  ttl = '1 minute',
  capacity = 4,
})

kumo.on('tsa_init', function()
  -- Must precede the listener. The live state is written next to it as
  -- tsa.db.state on the pod's state volume.
  tsa.configure_tsa_db_path(config.state_dir .. '/tsa.db')
  -- kumod pods publish without credentials, so the pod network must be in
  -- trusted_hosts; the default listen address is loopback only.
  tsa.start_http_listener { listen = '0.0.0.0:8008', trusted_hosts = config.trusted_hosts }
end)

-- The same files, in the same order, as kumod's shaping helper loads, so
-- both sides agree on which automation rules exist.
-- tsa-daemon loads the shaping files before tsa_init, resolving the MX of
-- every mx_rollup domain; mx-dns must answer that first load already, so
-- that TSA's site names are kumod's.
local resolver_configured = false

kumo.on('tsa_load_shaping_data', function()
  if not resolver_configured then
    dns.use(config.mx_dns)
    resolver_configured = true
  end
  return cached_load_shaping_data(SHAPING_FILES)
end)
