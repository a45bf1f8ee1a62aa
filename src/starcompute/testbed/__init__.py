"""The testbed: the constellation as processes on one or more machines (a node per
satellite, the link emulator that carries bytes only while the contact plan has a link up,
the ground segment and the gateway), provisioned and started by ``starcompute testbed``."""
