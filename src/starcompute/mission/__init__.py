"""Mission control: the query lifecycle from a ground station to an orbiting model and back."""
