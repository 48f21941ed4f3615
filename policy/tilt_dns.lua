-- Points KumoMTA's resolver (MX lookups, provider hosts, shaping rollups) at
-- mx-dns, the cluster's stand-in for the internet's DNS (k8s/base/mx-dns).
-- configure_resolver takes addresses only, so the Service name is resolved
-- first, through the pod's own DNS; a ClusterIP does not change while the
-- Service exists. The resolver is process-wide and may be replaced at any
-- time (crates/dns-resolver, reconfigure_resolver).

local kumo = require 'kumo'

local mod = {}

function mod.use(service_fqdn)
  local ok, addresses = pcall(kumo.dns.lookup_addr, service_fqdn)
  if not ok or type(addresses) ~= 'table' or #addresses == 0 then
    error(
      string.format(
        'kumomta-tilt policy: cannot resolve %s (%s); is the mx-dns Service deployed and its pod Ready?',
        service_fqdn,
        tostring(addresses)
      ),
      0
    )
  end
  local address = addresses[1]
  if address:find(':', 1, true) then
    address = '[' .. address .. ']'
  end
  kumo.dns.configure_resolver { name_servers = { address .. ':53' } }
  return address
end

return mod
