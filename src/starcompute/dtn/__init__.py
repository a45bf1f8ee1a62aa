"""Delay-tolerant networking: BPv7 bundles (RFC 9171), the TCP convergence layer
(RFC 7242, with per-bundle acknowledgement), the custody store (SQLite) and the bundle
agent that stores, routes (contact graph routing) and forwards them."""
