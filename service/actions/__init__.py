"""The use cases of the API: each asks the policy, then changes state in one transaction.

A deny changes nothing but the decision log; an allow applies the state change and the
effects the policy named, with their events, or (on any error) none of it.
"""

from audience_authz.actions.ad_groups import get_ad_group, upsert_ad_group
from audience_authz.actions.audiences import (
                                              create_audience,
                                              create_lookalike,
                                              delete_audience,
                                              edit_audience,
                                              get_audience,
                                              list_audiences,
                                              refresh_lookalike,
)
from audience_authz.actions.entities import (
                                              KEEP,
                                              accept_terms,
                                              get_account,
                                              get_business_center,
                                              upsert_account,
                                              upsert_business_center,
)
from audience_authz.actions.feeds import decision, decisions, events, latest_event_id
from audience_authz.actions.sharing import list_shares, share, share_log, stop_sharing

__all__ = ["KEEP", "accept_terms", "create_audience", "create_lookalike", "decision", "decisions", "delete_audience",
           "edit_audience", "events", "get_account", "get_ad_group", "get_audience", "get_business_center",
           "latest_event_id", "list_audiences", "list_shares", "refresh_lookalike", "share",
           "share_log", "stop_sharing", "upsert_account", "upsert_ad_group", "upsert_business_center"]
