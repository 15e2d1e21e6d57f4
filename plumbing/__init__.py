"""Plumbing that both services need: telemetry, command-line options, process life cycle, clients.

syncd and unsealer never import each other; what they share lives here and nowhere else. Keep it
small: anything that belongs to one service's domain goes into that service.
"""
