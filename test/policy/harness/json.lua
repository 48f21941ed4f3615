-- Minimal JSON encoder for the harness output. Integers and floats stay
-- distinct (2525 vs 2525.0) so the TypeScript side can check that the policy
-- handed KumoMTA numbers of the right kind.
local mod = {}

local ESCAPES = {
  ['"'] = '\\"',
  ['\\'] = '\\\\',
  ['\b'] = '\\b',
  ['\f'] = '\\f',
  ['\n'] = '\\n',
  ['\r'] = '\\r',
  ['\t'] = '\\t',
}

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format('\\u%04x', c:byte())
  end) .. '"'
end

local ARRAY = { __jsontype = 'array' }

-- Marks a table that must encode as an array even when empty.
function mod.array(t)
  return setmetatable(t, ARRAY)
end

local function is_array(t)
  if getmetatable(t) == ARRAY then
    return true
  end
  local count = 0
  for key in pairs(t) do
    if math.type(key) ~= 'integer' or key < 1 then
      return false
    end
    count = count + 1
  end
  return count > 0 and count == #t
end

function mod.encode(value)
  local kind = type(value)
  if kind == 'nil' then
    return 'null'
  elseif kind == 'boolean' then
    return tostring(value)
  elseif kind == 'number' then
    if math.type(value) == 'integer' then
      return string.format('%d', value)
    end
    return string.format('%.17g', value):find('[.eEn]') and string.format('%.17g', value)
      or string.format('%.1f', value)
  elseif kind == 'string' then
    return encode_string(value)
  elseif kind == 'table' then
    local parts = {}
    if is_array(value) then
      for _, item in ipairs(value) do
        table.insert(parts, mod.encode(item))
      end
      return '[' .. table.concat(parts, ',') .. ']'
    end
    local keys = {}
    for key in pairs(value) do
      table.insert(keys, tostring(key))
    end
    table.sort(keys)
    for _, key in ipairs(keys) do
      local item = value[key]
      if item == nil then
        item = value[tonumber(key)]
      end
      table.insert(parts, encode_string(key) .. ':' .. mod.encode(item))
    end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  return encode_string('<' .. kind .. '>')
end

return mod
