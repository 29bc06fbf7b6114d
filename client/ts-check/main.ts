// A TypeScript service calling audience-authz through a client generated from /openapi.json
// (openapi-typescript types, openapi-fetch calls). tests/test_openapi_contract.py generates
// generated/api.d.ts from a live server, type-checks this file with tsc and runs it with node:
//   node dist/main.js BASE_URL TOKEN OWNER RECIPIENT PEER AUDIENCE
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/api.js";

type Effect = components["schemas"]["AuthorizeAnswer"]["effects"][number];
type ReasonCode = components["schemas"]["Reason"]["code"];

const [baseUrl, token, owner, recipient, peer, audience] = process.argv.slice(2);
if (!baseUrl || !token || !owner || !recipient || !peer || !audience) {
  throw new Error("usage: main.js BASE_URL TOKEN OWNER RECIPIENT PEER AUDIENCE");
}
const authz = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

type Schemas = components["schemas"];
type KnownEffect = Schemas["EndShareEffect"] | Schemas["RemoveFromListEffect"] | Schemas["DisconnectAudienceEffect"]
  | Schemas["PauseAdGroupEffect"] | Schemas["PropagateUpdateEffect"];
const KNOWN_EFFECTS: readonly string[] = ["end_share", "remove_from_list", "disconnect_audience", "pause_ad_group",
                                          "propagate_update"];
// effect types are open (a newer service may add one): the known ones are told apart, any other kept as it came
function isKnown(effect: Effect): effect is KnownEffect {
  return KNOWN_EFFECTS.includes(effect.type);
}

function describe(effect: Effect): string {
  if (!isKnown(effect)) return `${effect.type}:?`;
  switch (effect.type) {  // a discriminated union: each case sees its own fields
    case "end_share":
    case "remove_from_list":
      return `${effect.type}:${effect.account_id}`;
    case "disconnect_audience":
      return `${effect.type}:${effect.ad_group_id}:${effect.after.include.length}`;
    case "pause_ad_group":
      return `${effect.type}:${effect.ad_group_id}`;
    case "propagate_update":
      return `${effect.type}:${effect.account_ids.join(",")}`;
  }
}

// @ts-expect-error: "aply" is not an action (the document's enum)
const misspelt: components["schemas"]["AuthorizeBody"]["action"] = "aply";
void misspelt;

// only the required fields: context and explain are optional
const denied = await authz.POST("/v1/authorize", {
  body: { principal: { account_id: recipient }, action: "share", resource: { audience_id: audience },
          context: { target_account_id: peer } },
  params: { header: { "X-Request-Id": "ts-authorize-1" } },
});
if (!denied.data) throw new Error(`authorize: HTTP ${denied.response.status}`);
const codes: ReasonCode[] = denied.data.reasons.map((r) => r.code);

const shared = await authz.POST("/v1/audiences/{id}/shares", {
  params: { path: { id: audience }, header: { "X-Account-Id": owner } },
  body: { account_ids: [peer] },
});
if (!shared.data) throw new Error(`share: HTTP ${shared.response.status}`);

const reshare = await authz.POST("/v1/audiences/{id}/shares", {
  params: { path: { id: audience }, header: { "X-Account-Id": recipient } },
  body: { account_ids: [owner] },
});
let reshareCodes: string[] = [];
if (typeof reshare.error === "object" && "decision" in reshare.error) {  // 403: the policy deny
  reshareCodes = reshare.error.reasons.map((r) => r.code);
}

const allowed = await authz.POST("/v1/authorize", {
  body: { principal: { account_id: owner }, action: "stop_sharing", resource: { audience_id: audience },
          context: { target_account_id: peer } },
});
if (!allowed.data) throw new Error(`authorize: HTTP ${allowed.response.status}`);

const stopped = await authz.DELETE("/v1/audiences/{id}/shares/{account_id}", {
  params: { path: { id: audience, account_id: peer }, header: { "X-Account-Id": owner } },
});
if (!stopped.data) throw new Error(`stop sharing: HTTP ${stopped.response.status}`);

const latest = await authz.GET("/v1/events/latest", {});
console.log(JSON.stringify({
  denied: { decision: denied.data.decision, codes, request_id: denied.response.headers.get("X-Request-Id") },
  shared: shared.data.recipients,
  reshare: { status: reshare.response.status, codes: reshareCodes },
  allowed: { decision: allowed.data.decision, effects: allowed.data.effects.map(describe) },
  stopped: { stopped: stopped.data.stopped, effects: stopped.data.effects.map(describe) },
  latest_event: latest.data?.id ?? null,
}));
