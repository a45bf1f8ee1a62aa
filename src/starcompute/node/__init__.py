"""The flight software of one satellite: what ``starcompute node`` runs, in a process of its
own or inside a test (its bundle agent, job checks with its own keys, its engine and batch
queue, its pace, its battery, radiator and upsets, its housekeeping)."""
