"""The per-stream pipeline shared by the daemon, training and offline scoring: preprocessing and MTCNN,
face tracks (tracking.py: which face is which person, torch-free), `StreamAnalysis` (one stream's
state, sans-IO) and the decision rules. It imports no family and no bundle (engines/scoring.py binds
them to it), so families build on the pipeline, never the reverse."""
