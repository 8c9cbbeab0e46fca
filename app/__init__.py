"""Modex Seatmap: a real-time seat map and ticket-booking server."""
