"""A typed Python client of audience-authz, for the services that call it.

    from audience_authz_client import AuthzClient, Denied

    with AuthzClient("http://authz.internal:8080", token, timeout=2.0) as authz:
        decision = authz.authorize("acc_2", "share", "aud_A", target_account_id="acc_3")
        if decision.allowed: ...
        shared = authz.share("acc_2", "aud_A", ["acc_3"])
        if isinstance(shared, Denied): print(shared.codes)

It needs ``requests`` only. What fails closed, what is raised, the deadline, the retries
and 429: see ``audience_authz_client.client``.
"""

from audience_authz_client.client import BATCH_LIMIT, PAGE_LIMIT, AuthzClient, path, segment
from audience_authz_client.errors import AuthzError, RateLimited, RequestError, Unavailable
from audience_authz_client.types import (
                                         CLIENT_REASONS,
                                         KNOWN_EVENT_TYPES,
                                         KNOWN_REASON_CODES,
                                         Account,
                                         Action,
                                         AdGroup,
                                         AdGroupResult,
                                         Audience,
                                         AudienceList,
                                         AudienceResult,
                                         BusinessCenter,
                                         Check,
                                         Decision,
                                         DecisionEntry,
                                         DecisionPage,
                                         DecisionValue,
                                         DeleteResult,
                                         Denied,
                                         DisconnectAudience,
                                         Effect,
                                         EffectType,
                                         EndShare,
                                         Event,
                                         EventPage,
                                         EventSpan,
                                         EventType,
                                         KnownEffectType,
                                         KnownEventType,
                                         KnownReasonCode,
                                         MatrixAction,
                                         OtherEffect,
                                         PauseAdGroup,
                                         PropagateUpdate,
                                         Reason,
                                         ReasonCode,
                                         RemoveFromList,
                                         ShareEntry,
                                         ShareList,
                                         ShareLog,
                                         ShareLogEntry,
                                         ShareResult,
                                         Source,
                                         StopResult,
                                         Targeting,
)

__version__ = "0.3.0"
__all__ = [
    "BATCH_LIMIT", "CLIENT_REASONS", "KNOWN_EVENT_TYPES", "KNOWN_REASON_CODES", "PAGE_LIMIT", "Account",
    "Action", "AdGroup", "AdGroupResult", "Audience", "AudienceList", "AudienceResult", "AuthzClient",
    "AuthzError", "BusinessCenter", "Check", "Decision", "DecisionEntry", "DecisionPage", "DecisionValue",
    "DeleteResult", "Denied", "DisconnectAudience", "Effect", "EffectType", "EndShare", "Event", "EventPage",
    "EventSpan", "EventType", "KnownEffectType", "KnownEventType", "KnownReasonCode", "MatrixAction",
    "OtherEffect", "PauseAdGroup", "PropagateUpdate", "RateLimited", "Reason", "ReasonCode", "RemoveFromList",
    "RequestError", "ShareEntry", "ShareList", "ShareLog", "ShareLogEntry", "ShareResult", "Source",
    "StopResult", "Targeting", "Unavailable", "path", "segment",
]
