"""Notifications: the reject webhook and its persistent outbox."""
