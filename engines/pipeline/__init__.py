"""The per-stream pipeline shared by the daemon, training and offline scoring: preprocessing and MTCNN,
`StreamAnalysis` (one stream's state, sans-IO), the decision rules, and the driver that runs its work."""
