-- A strict parser for the subset of TOML that policy/*.toml uses: comments,
-- [table] headers with bare or quoted keys, key = value with strings,
-- integers, floats, booleans and one-line arrays. Anything else is an error,
-- so a file that drifts outside the subset fails the tests loudly instead of
-- being half-read. (The real kumod parses these files with a full TOML
-- parser; KumoMTA's own copies in the image are never parsed here.)
local mod = {}

local function fail(source, line_no, message)
  error(string.format('%s:%d: %s', source, line_no, message), 0)
end

local function parse_key(text, source, line_no)
  local keys = {}
  local rest = text
  while true do
    rest = rest:match '^%s*(.-)$'
    local key, after
    if rest:sub(1, 1) == '"' then
      key, after = rest:match '^"([^"]*)"(.*)$'
    elseif rest:sub(1, 1) == "'" then
      key, after = rest:match "^'([^']*)'(.*)$"
    else
      key, after = rest:match '^([%w_%-]+)(.*)$'
    end
    if not key then
      fail(source, line_no, 'bad key: ' .. text)
    end
    table.insert(keys, key)
    after = after:match '^%s*(.-)%s*$'
    if after == '' then
      return keys
    end
    if after:sub(1, 1) ~= '.' then
      fail(source, line_no, 'bad key: ' .. text)
    end
    rest = after:sub(2)
  end
end

local parse_value

local function parse_string(text, source, line_no)
  if text:sub(1, 1) == "'" then
    local value, rest = text:match "^'([^']*)'(.*)$"
    if not value then
      fail(source, line_no, 'unterminated literal string')
    end
    return value, rest
  end
  local out = {}
  local i = 2
  while i <= #text do
    local c = text:sub(i, i)
    if c == '"' then
      return table.concat(out), text:sub(i + 1)
    elseif c == '\\' then
      local e = text:sub(i + 1, i + 1)
      local map = { n = '\n', t = '\t', r = '\r', ['"'] = '"', ['\\'] = '\\' }
      if not map[e] then
        fail(source, line_no, 'unsupported escape \\' .. e)
      end
      table.insert(out, map[e])
      i = i + 2
    else
      table.insert(out, c)
      i = i + 1
    end
  end
  fail(source, line_no, 'unterminated string')
end

function parse_value(text, source, line_no)
  text = text:match '^%s*(.-)$'
  local first = text:sub(1, 1)
  if first == '"' or first == "'" then
    return parse_string(text, source, line_no)
  elseif first == '[' then
    local list = {}
    local rest = text:sub(2)
    while true do
      rest = rest:match '^%s*(.-)$'
      if rest:sub(1, 1) == ']' then
        return list, rest:sub(2)
      end
      local item
      item, rest = parse_value(rest, source, line_no)
      table.insert(list, item)
      rest = rest:match '^%s*(.-)$'
      if rest:sub(1, 1) == ',' then
        rest = rest:sub(2)
      elseif rest:sub(1, 1) ~= ']' then
        fail(source, line_no, 'bad array (only one-line arrays are supported)')
      end
    end
  elseif text:match '^true' then
    return true, text:sub(5)
  elseif text:match '^false' then
    return false, text:sub(6)
  end
  local number, rest = text:match '^([+-]?[%d_]+%.?[%d_]*)(.*)$'
  if number then
    local clean = number:gsub('_', '')
    if clean:find('.', 1, true) then
      return tonumber(clean) + 0.0, rest
    end
    return math.tointeger(tonumber(clean)), rest
  end
  fail(source, line_no, 'unsupported value: ' .. text)
end

local function strip_comment(rest, source, line_no)
  rest = rest:match '^%s*(.-)%s*$'
  if rest ~= '' and rest:sub(1, 1) ~= '#' then
    fail(source, line_no, 'unexpected text after value: ' .. rest)
  end
end

function mod.parse(text, source)
  local root = {}
  local current = root
  local defined = {}
  local line_no = 0
  for line in (text .. '\n'):gmatch '([^\n]*)\n' do
    line_no = line_no + 1
    local trimmed = line:match '^%s*(.-)%s*$'
    if trimmed == '' or trimmed:sub(1, 1) == '#' then
      goto continue
    end
    if trimmed:sub(1, 2) == '[[' then
      fail(source, line_no, 'arrays of tables are not supported by the harness')
    end
    if trimmed:sub(1, 1) == '[' then
      local inner, rest = trimmed:match '^%[(.-)%](.*)$'
      if not inner then
        fail(source, line_no, 'bad table header')
      end
      strip_comment(rest, source, line_no)
      local keys = parse_key(inner, source, line_no)
      local path = table.concat(keys, '\0')
      if defined[path] then
        fail(source, line_no, 'table defined twice: ' .. inner)
      end
      defined[path] = true
      current = root
      for _, key in ipairs(keys) do
        current[key] = current[key] or {}
        if type(current[key]) ~= 'table' then
          fail(source, line_no, 'key is not a table: ' .. key)
        end
        current = current[key]
      end
    else
      local key_text, value_text = trimmed:match '^(.-)%s*=%s*(.*)$'
      if not key_text then
        fail(source, line_no, 'expected key = value')
      end
      local keys = parse_key(key_text, source, line_no)
      if #keys ~= 1 then
        fail(source, line_no, 'dotted keys are not supported by the harness')
      end
      if current[keys[1]] ~= nil then
        fail(source, line_no, 'duplicate key: ' .. keys[1])
      end
      local value, rest = parse_value(value_text, source, line_no)
      strip_comment(rest, source, line_no)
      current[keys[1]] = value
    end
    ::continue::
  end
  return root
end

return mod
