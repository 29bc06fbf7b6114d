"""Deciding: the policy, the facts it is asked about, and the decision log. No Flask here."""
