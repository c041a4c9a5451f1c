-- Argo CD health check for jitrbac.io/AccessGrant.
--
-- Reads what the jitrbac operator writes in status (phase, observedGeneration, and the
-- kstatus conditions Ready and Stalled) and answers with an Argo CD health status whose
-- message is the grant's Ready message. The mapping and the reasons for it are in
-- docs/gitops.md.
--
-- Argo CD runs this with gopher-lua (Lua 5.1) and, for checks configured in argocd-cm,
-- opens only the base, table and package libraries (plus a reduced os): no string.*.
-- argocd-cm-patch.yaml and helm-values.yaml next to this file carry the same script;
-- tests/argocd.rs fails when they differ and runs the script against sample grants.

local function find_condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function result(health, message)
  return { status = health, message = message }
end

local status = obj.status
if status == nil or status.phase == nil then
  return result("Progressing", "waiting for the jitrbac operator to pick up the grant")
end

local phase = status.phase
local ready = find_condition(status, "Ready")
local stalled = find_condition(status, "Stalled")

-- A status written for an older spec (for example just before spec.revoked was set)
-- says nothing about the current one.
local generation = tonumber(obj.metadata.generation)
if generation ~= nil then
  -- the older of status.observedGeneration and the Ready condition's observedGeneration
  local observed = tonumber(status.observedGeneration)
  local ready_observed = ready ~= nil and tonumber(ready.observedGeneration) or nil
  if ready_observed ~= nil and (observed == nil or ready_observed < observed) then
    observed = ready_observed
  end
  if observed ~= nil and observed < generation then
    return result("Progressing", "waiting for the jitrbac operator to observe generation "
      .. generation .. " (status describes generation " .. observed .. ")")
  end
end

local message = phase
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  message = ready.message
elseif stalled ~= nil and stalled.message ~= nil and stalled.message ~= "" then
  message = stalled.message
end

-- Needs a person: refused, impossible as written, or blocked by something a retry cannot
-- fix (NameClash, Forbidden, InvalidBinding; also an active grant whose edited binding
-- cannot be restored).
if (stalled ~= nil and stalled.status == "True") or phase == "Denied" or phase == "Failed" then
  return result("Degraded", message)
end

if ready == nil then
  return result("Progressing", "waiting for the jitrbac operator to report the Ready condition")
end

-- In the state its spec asks for: Active, Scheduled (waiting for startsAt), or ended
-- (Expired, Revoked). An ended grant is done, not broken.
if ready.status == "True" then
  return result("Healthy", message)
end

-- Waiting for a person to approve: Argo CD's Suspended, like a paused rollout.
if phase == "Pending" and ready.reason == "AwaitingApproval" then
  return result("Suspended", message)
end

-- Not there yet, and the operator keeps trying by itself (RoleNotFound,
-- NamespaceTerminating).
return result("Progressing", message)
