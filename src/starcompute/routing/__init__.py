"""Routing: instantaneous shortest-delay paths and store-and-forward over contacts."""
