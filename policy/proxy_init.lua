-- KumoProxy policy for kumomta-tilt (started with
-- `proxy-server --proxy-config /opt/kumomta/etc/policy/proxy_init.lua`).
--
-- Each proxy pod plays one public sending IP: kumod's egress source proxy-N
-- asks it, over SOCKS5, to connect to the sink (tilt_egress.lua).

local kumo = require 'kumo'
local proxy = require 'proxy'
local settings = require 'tilt_settings'

local config = settings.proxy(os.getenv)

kumo.on('proxy_init', function()
  -- Ports as in k8s/components/proxy/proxy.yaml. KumoProxy keeps its own
  -- 60 s handshake and idle timeout, longer than an SMTP reply takes.
  proxy.start_proxy_listener { listen = '0.0.0.0:5000' }
  -- /metrics and /proxy/status for `npm run status` and the console; the
  -- admin endpoints only for trusted peers, as on kumod.
  proxy.start_http_listener { listen = '0.0.0.0:8080', trusted_hosts = config.trusted_hosts }
end)
