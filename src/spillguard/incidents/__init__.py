"""Incidents: breach response from "I lost my phone" to notified customers (issue 6)."""
