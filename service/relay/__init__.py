"""The outbox relay: committed events published to a broker, exactly once, in commit order.

The events table is the outbox (events are recorded in the action's transaction, their ids
in commit order: store/locks.lock_event_feed); ``loop.py`` reads it and hands the events to a
``Publisher`` (``publisher.py``), whose broker is the one record of what was published.
See docs/events.md ("The relay").
"""
