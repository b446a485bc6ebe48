"""dfwatch daemon: capture processes, the inference process, the supervisor and clients."""
