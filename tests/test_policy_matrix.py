"""`audience-authz policy matrix`: the table derived from the policy files is SPEC §3's table,
and follows the files when a line changes."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.support.policy import cli, copy_policy, replace

# SPEC §3, verbatim.
SPEC_TABLE = """
| action | owner | recipient | none |
| --- | --- | --- | --- |
| `view` (appears in the account's audience list) | allow | allow | deny |
| `edit` (rename; add/remove/replace members) | allow | deny | deny |
| `apply` (include or exclude in an ad group of the acting account) | allow | allow | deny |
| `delete` | allow (removes it everywhere) | allow (removes it from its own list only) | deny |
| `share` | allow, subject to the sharing rules | deny (no re-sharing) | deny |
| `stop_sharing` | allow | deny | deny |
| `create_lookalike` | allow | deny | deny |
| `refresh_lookalike` | allow | deny | deny |
"""


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """Each '## title' of a Markdown document with the rows of its table (header first)."""
    tables, title = {}, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
        elif line.startswith("|") and not line.startswith("| ---"):
            tables.setdefault(title, []).append([c.strip() for c in line.strip("|").split("|")])
    return tables


def _decisions(rows: list[list[str]]) -> dict[str, list[str]]:
    """action -> the first word (allow or deny) of each cell."""
    return {re.search(r"`(\w+)`", row[0]).group(1): [re.match(r"(allow|deny)", c).group(1) for c in row[1:]]
            for row in rows[1:]}


def test_the_matrix_of_the_shipped_policy_is_spec_table():
    result = cli("policy", "matrix")
    assert result.exit_code == 0, result.output
    access = _tables(result.stdout)["Owner and recipient access"]
    spec = _tables("## spec\n" + SPEC_TABLE)["spec"]
    assert access[0] == spec[0]  # action | owner | recipient | none
    assert list(_decisions(access)) == list(_decisions(spec))  # the same actions in the same order
    assert _decisions(access) == _decisions(spec)


def test_the_matrix_shows_reasons_effects_and_the_sharing_scope():
    tables = _tables(cli("policy", "matrix").stdout)
    rows = {r[0]: r[1:] for r in tables["Owner and recipient access"]}
    assert rows["`share`"] == ["allow", "deny (`reshare_forbidden`)", "deny (`no_access`)"]
    assert rows["`delete`"][0] == "allow (end_share, remove_from_list, disconnect_audience:broaden)"
    assert rows["`delete`"][1] == "allow (end_share, remove_from_list)"
    scope = [r[1:] for r in tables["Sharing scope"][1:] if r[0] == "in a Business Center"]
    assert ["in the same Business Center", "no", "allow"] in scope
    assert ["in another Business Center", "no", "deny (`not_same_business_center`)"] in scope
    assert ["in another Business Center", "yes", "allow"] in scope
    assert ["in no Business Center", "yes", "deny (`account_not_in_business_center`)"] in scope
    shareable = dict(tables["Shareable audiences"][1:])
    assert shareable["custom, source `partner`"] == "allow"
    assert shareable["custom, source `lead_generation`"] == "deny (`audience_not_shareable`)"
    assert shareable["lookalike of a seed of source `partner`"] == "allow"
    assert shareable["lookalike of a seed of source `lead_generation`"] == "deny (`audience_not_shareable`)"


def test_changing_a_line_changes_the_matrix(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    before = _tables(cli("policy", "matrix", "--policy-dir", policy).stdout)
    replace(policy / "policy.csv", "p, recipient, refresh_lookalike, True, deny, recipient_action_forbidden,",
            "p, recipient, refresh_lookalike, True, allow, recipient_may_refresh_lookalike, propagate_update")
    replace(policy / "policy.csv", "p, owner, share, not r.f.same_bc and not r.f.owner_bc_allowlisted, deny,"
            " not_same_business_center,\n", "")
    after = _tables(cli("policy", "matrix", "--policy-dir", policy).stdout)
    changed = [(title, old, new) for title in before for old, new in zip(before[title], after[title]) if old != new]
    assert changed == [
        ("Owner and recipient access",
         ["`refresh_lookalike`", "allow (propagate_update)", "deny (`recipient_action_forbidden`)", "deny (`no_access`)"],
         ["`refresh_lookalike`", "allow (propagate_update)", "allow (propagate_update)", "deny (`no_access`)"]),
        ("Sharing scope",
         ["in a Business Center", "in another Business Center", "no", "deny (`not_same_business_center`)"],
         ["in a Business Center", "in another Business Center", "no", "allow"]),
    ]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.cells, self.external = [], [], []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.external += [v for k, v in attrs if k in ("src", "href")]
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def test_the_html_page_is_self_contained_and_says_the_same(tmp_path):
    out = tmp_path / "matrix.html"
    result = cli("policy", "matrix", "--format", "html", "-o", out)
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed(out.read_text())
    assert page.tags[0] == "html" and "style" in page.tags
    assert not page.external and "script" not in page.tags and "link" not in page.tags
    markdown = _tables(cli("policy", "matrix").stdout)
    assert page.tags.count("table") == len(markdown)

    def words(cell: str) -> str:  # the text without Markdown's code marks and brackets
        return " ".join(re.sub(r"[`()]", " ", cell).split())

    assert [words(c) for c in page.cells] == [words(c) for rows in markdown.values() for row in rows for c in row]
