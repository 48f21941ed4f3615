-- luacheck configuration for policy/*.lua and the test harness.
-- Run: luacheck --config test/policy/.luacheckrc policy test/policy/harness
--
-- No extra globals are declared: the policy obtains `kumo`, `tsa` and the
-- policy-extras helpers through require(), as KumoMTA's own examples do, so
-- any global a file reads or writes is a mistake worth reporting.
std = 'lua54'
max_line_length = 120
-- `function mod:setup(...)` is the policy-extras calling convention; methods
-- that do not need `self` still take it.
self = false
