"""``policy matrix``: the source's owner/recipient table and the sharing rules, derived from
the policy files by asking the policy, as Markdown or a small HTML page.

Nothing here decides: each cell is ``Policy.decide`` on the ordinary request of its row
(the facts below); change a line of policy.csv and the table changes with it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from audience_authz.engine.policy import ACCOUNT_ACTIONS, AUDIENCE_RELATIONS, MATRIX_ACTIONS, Decision, Policy
from audience_authz.vocabulary import SOURCES

# The ordinary request of each action: what the facts are when an account asks it in the
# usual way (an active custom audience of source customer_file unless said otherwise).
SHARE = {"target_specified": True, "target_known": True, "target_in_bc": True, "same_bc": True}
ORDINARY = {
    "share": SHARE,
    "stop_sharing": {**SHARE, "target_has_share": True},
    "apply": {"ad_group_known": True, "ad_group_owned": True},
    "refresh_lookalike": {"audience_type": "lookalike", "audience_source": "", "seed_status": "active",
                          "seed_source": "customer_file"},
    "view_ad_group": {"ad_group_known": True, "ad_group_owned": True},
    "edit_ad_group": {"ad_group_known": True, "ad_group_owned": True},
    "resume_ad_group": {"ad_group_known": True, "ad_group_owned": True},
}
LOOKALIKE = {"audience_type": "lookalike", "audience_source": "", "seed_status": "active",
             "seed_source": "customer_file"}


@dataclass
class Table:
    title: str
    intro: str
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)  # str or Decision cells


def tables(policy: Policy) -> list[Table]:
    def decide(rel: str, act: str, **facts) -> Decision:
        return policy.decide(rel, act, policy.facts(**{**ORDINARY.get(act, {}), **facts}))

    access = Table("Owner and recipient access",
                   "What each account may do with an audience: its owner, a recipient (the audience"
                   " is shared with it) and an account with no relation to it.",
                   ["action", "owner", "recipient", "none"])
    for act in MATRIX_ACTIONS:
        access.rows.append([f"`{act}`", *(decide(rel, act) for rel in AUDIENCE_RELATIONS)])

    scope = Table("Sharing scope",
                  "The owner shares an active custom audience with another account, by where the"
                  " two accounts stand.",
                  ["owner account", "target account", "owner's Business Center allowlisted", "share"])
    for owner_in, target, allowlisted in [(True, "same", False), (True, "other", False), (True, "other", True),
                                          (True, "none", False), (True, "none", True),
                                          (False, "other", False), (False, "none", False)]:
        facts = {"principal_in_bc": owner_in, "target_in_bc": target != "none",
                 "same_bc": owner_in and target == "same", "owner_bc_allowlisted": allowlisted}
        scope.rows.append(["in a Business Center" if owner_in else "in no Business Center",
                           {"same": "in the same Business Center",
                            "other": "in another Business Center" if owner_in else "in a Business Center",
                            "none": "in no Business Center"}[target],
                           "yes" if allowlisted else "no", decide("owner", "share", **facts)])

    shareable = Table("Shareable audiences", "The owner shares an audience of each kind within its Business Center.",
                      ["audience", "share"])
    for source in SOURCES:
        shareable.rows.append([f"custom, source `{source}`", decide("owner", "share", audience_source=source)])
    for source in SOURCES:
        shareable.rows.append([f"lookalike of a seed of source `{source}`",
                               decide("owner", "share", **{**LOOKALIKE, "seed_source": source})])
    shareable.rows.append(["deleted", decide("owner", "share", audience_status="deleted")])

    sharing = Table("More sharing rules", "The owner shares an active custom audience within its Business Center, when:",
                    ["case", "share"])
    sharing.rows += [
        ["the owner account has not accepted the Custom Audience Terms",
         decide("owner", "share", principal_terms_accepted=False)],
        ["the target is the owner account itself", decide("owner", "share", target_is_self=True)],
        ["the target already has an active share", decide("owner", "share", target_has_share=True)],
        ["the target account is unknown", decide("owner", "share", target_known=False, target_in_bc=False,
                                                 same_bc=False)],
    ]

    after = Table("Stopping and deleting", "What the owner's and a recipient's actions carry out.",
                  ["action", "decision and effects"])
    after.rows += [
        ["owner stops sharing with one recipient", decide("owner", "stop_sharing")],
        ["owner stops sharing with every recipient", decide("owner", "stop_sharing", target_specified=False,
                                                            target_known=False)],
        ["owner deletes", decide("owner", "delete")],
        ["recipient removes it from its list", decide("recipient", "delete")],
        ["either deletes while it is in one of its ad groups", decide("owner", "delete", attached_ad_groups=1)],
    ]

    other = Table("Other audience actions", "", ["action", "owner", "recipient", "none"])
    other.rows.append(["`view_shares` (active recipients, share log)",
                       *(decide(rel, "view_shares") for rel in AUDIENCE_RELATIONS)])
    other.rows.append(["`create_lookalike` from a lookalike",
                       *(decide(rel, "create_lookalike", **LOOKALIKE) for rel in AUDIENCE_RELATIONS)])

    accounts = Table("Account actions", "An account acting on its own things (self) or another account's (other).",
                     ["action", "self", "other"])
    for act in ACCOUNT_ACTIONS:
        accounts.rows.append([f"`{act}`", decide("self", act), decide("other", act)])
    return [access, scope, shareable, sharing, after, other, accounts]


def _cell_text(cell) -> str:
    if not isinstance(cell, Decision):
        return str(cell)
    if not cell.allowed:
        return f"deny (`{cell.reason}`)"
    effects = ", ".join(f"{n}:{a}" if a else n for n, a in cell.effects)
    return f"allow ({effects})" if effects else "allow"


def markdown(policy: Policy) -> str:
    out = [f"# Audience sharing policy {policy.version}", "",
           f"Derived from `{policy.directory}` by asking the policy; `deny (code)` gives the reason code,"
           " `allow (...)` the effects the action carries.", ""]
    for table in tables(policy):
        out += [f"## {table.title}", ""]
        if table.intro:
            out += [table.intro, ""]
        out.append("| " + " | ".join(table.headers) + " |")
        out.append("| " + " | ".join("---" for _ in table.headers) + " |")
        out += ["| " + " | ".join(_cell_text(c) for c in row) + " |" for row in table.rows]
        out.append("")
    return "\n".join(out)


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f4f4f4}.allow{background:#e6f4ea}.deny{background:#fce8e6}code{font-size:90%}small{color:#555}"""


def _html_text(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_cell(cell) -> str:
    if not isinstance(cell, Decision):
        return f"<td>{_html_text(str(cell))}</td>"
    if not cell.allowed:
        return f'<td class="deny">deny <small><code>{html.escape(cell.reason)}</code></small></td>'
    effects = ", ".join(f"{n}:{a}" if a else n for n, a in cell.effects)
    extra = f" <small>{html.escape(effects)}</small>" if effects else ""
    return f'<td class="allow">allow{extra}</td>'


def html_page(policy: Policy) -> str:
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Audience sharing policy {policy.version}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Audience sharing policy <code>{policy.version}</code></h1>",
           f"<p>Derived from <code>{html.escape(str(policy.directory))}</code> by asking the policy.</p>"]
    for table in tables(policy):
        out.append(f"<h2>{html.escape(table.title)}</h2>")
        if table.intro:
            out.append(f"<p>{_html_text(table.intro)}</p>")
        out.append("<table><tr>" + "".join(f"<th>{_html_text(h)}</th>" for h in table.headers) + "</tr>")
        out += ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in table.rows]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
