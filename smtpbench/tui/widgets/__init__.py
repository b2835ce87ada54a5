"""Dashboard widgets, one per screen area; each draws itself from a ``View``."""
