"""Scheduled publishing: schedules on content items, their recurrence and their transitions."""
