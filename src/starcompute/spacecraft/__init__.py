"""The spacecraft: its environment and the hardware that has to live in it."""
