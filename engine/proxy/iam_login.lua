-- The IAM login step of a HAProxy IAM front (engine/proxy/iam_haproxy.py), run once per
-- connection as `tcp-request content lua.iam_login <verifier socket> <front id> <node>` (`<node>`:
-- `unix@<path>` or `<ip>:<port>` of the node's plain listener; `-`: none), after HAProxy
-- has terminated the client's TLS and before it relays bytes to the node in C.
--
-- It reads the client's commands (RESP) until one is a login; those before it (PING, HELLO 3,
-- CLIENT SETINFO ...) are answered by the node itself on a side connection (NOAUTH), as a node
-- answers them before AUTH, and taken out of the stream. When one is a login, `AUTH <user> <token>`,
-- `AUTH <token>` or `HELLO <ver> ... AUTH <user> <token> ...`, it asks the verifier (a unix
-- socket of the engine: one line `<front id> <user> <token>`, one line back) and:
--   "+<password>": the token opens the cache as the user: the token is replaced by the user's
--                  internal password in the buffer, and the node logs the client in;
--   "!":           the client sent an internal password itself (only the front may): it is
--                  replaced by one no user has, so the node answers WRONGPASS;
--   anything else: the command goes as it is (a password user's login; a token that did not
--                  verify, which the node refuses with WRONGPASS as no IAM user has a password
--                  a client knows).
-- Where the node's default user needs no login, the first command goes as it is: the node serves
-- the client. After this step HAProxy reads no more commands (the data path is C): a new token
-- on a logged-in connection goes to the node as it is (WRONGPASS).

local MAX_ARGS = 10
local MAX_BULK = 16384
local WAIT_MS = 5000 -- for a command, or the rest of one split across segments
local MAX_BEFORE_LOGIN = 16 -- commands answered before a login (then the node has the connection)
local NO_PASSWORD = "-" -- no user has it: ACL passwords are set as SHA-256 digests of >password rules

-- The command at the start of `buf`: its arguments and its length; nil when more bytes are
-- needed; false when it is not one this step reads (inline, too big: the node judges it).
local function parse(buf)
  if #buf == 0 then return nil end
  if buf:sub(1, 1) ~= "*" then return false end
  local eol = buf:find("\r\n", 1, true)
  if not eol then return (#buf < 16) and nil or false end
  local count = tonumber(buf:sub(2, eol - 1))
  if not count or count < 1 or count > MAX_ARGS then return false end
  local pos, args = eol + 2, {}
  for i = 1, count do
    if pos > #buf then return nil end
    if buf:sub(pos, pos) ~= "$" then return false end
    local len_end = buf:find("\r\n", pos, true)
    if not len_end then return (#buf - pos < 16) and nil or false end
    local len = tonumber(buf:sub(pos + 1, len_end - 1))
    if not len or len < 0 or len > MAX_BULK then return false end
    local start = len_end + 2
    if #buf < start + len + 1 then return nil end
    args[i] = buf:sub(start, start + len - 1)
    pos = start + len + 2
  end
  return args, pos - 1
end

-- (user, index of the password argument) of a login command, or nil.
local function login(args)
  local name = args[1]:upper()
  if name == "AUTH" then
    if #args == 2 then return "default", 2 end
    if #args == 3 then return args[2], 3 end
    return nil
  end
  if name == "HELLO" then
    local i = 3
    while i <= #args do
      local option = args[i]:upper()
      if option == "AUTH" then
        if i + 2 > #args then return nil end
        return args[i + 1], i + 2
      end
      i = i + ((option == "SETNAME") and 2 or 1)
    end
  end
  return nil
end

local function encode(args)
  local parts = { "*" .. #args .. "\r\n" }
  for _, arg in ipairs(args) do
    parts[#parts + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
  end
  return table.concat(parts)
end

-- The verifier's answer for a login: "+<password>", "!" or "-" (also when it cannot be asked:
-- a login that cannot be checked is not let in on a token).
local function ask(path, front, user, token)
  local sock = core.tcp()
  sock:settimeout(5)
  local answer = "-"
  if sock:connect("unix@" .. path) then
    if sock:send(front .. " " .. user .. " " .. token .. "\n") then
      answer = sock:receive("*l") or "-"
    end
  end
  sock:close()
  return answer
end

-- The client's next command (waiting for it); nil when none comes whole.
local function next_command(req)
  local waited = 0
  while true do
    local args, length = parse(req:data(0) or "")
    if args ~= nil or not req:may_recv() or waited >= WAIT_MS then return args, length end
    core.msleep(1)
    waited = waited + 1
  end
end

-- A connection to the node for the commands a client sends before it logs in (PING, HELLO 3,
-- CLIENT SETNAME ...): the node answers them, NOAUTH, and nothing changes on it. nil when the
-- node serves clients without a login (its default user is on without a password: then the
-- client's own connection does) or cannot be asked.
local function side_connection(node)
  local sock = core.tcp()
  sock:settimeout(5)
  if sock:connect(node) and sock:send("*1\r\n$4\r\nPING\r\n") then
    local line = sock:receive("*l")
    if line and line:sub(1, 7) == "-NOAUTH" then return sock end
  end
  sock:close()
  return nil
end

core.register_action("iam_login", { "tcp-req" }, function(txn, path, front, node)
  local req = txn.req
  local side = nil
  local args, length, user, slot
  for _ = 0, MAX_BEFORE_LOGIN do
    args, length = next_command(req)
    if not args then break end
    user, slot = login(args)
    if user ~= nil or node == nil or node == "-" or args[1]:upper() == "QUIT" then break end
    -- Not a login: the node answers it on the side connection (an error: no login yet), then
    -- the next command is read. An answer that is not an error cannot come (the node said
    -- NOAUTH to a PING), but if one does, the connection ends rather than lose it.
    side = side or side_connection(node)
    if not side then break end
    local line = side:send(encode(args)) and side:receive("*l")
    if not line or line:sub(1, 1) ~= "-" then
      side:close()
      txn:done()
      return
    end
    txn.res:send(line .. "\r\n")
    req:remove(0, length)
    args = nil
  end
  if side then side:close() end
  if not args or user == nil or user:find("[%s]") or args[slot]:find("[%s]") then return end
  local answer = ask(path, front, user, args[slot])
  if answer:sub(1, 1) == "+" then
    args[slot] = answer:sub(2)
    txn:set_var("sess.iam", true) -- to the `iam` backend: ended after 12 hours (iam_sessions.py)
  elseif answer == "!" then
    args[slot] = NO_PASSWORD
  else
    return
  end
  req:set(encode(args), 0, length)
end, 3)
