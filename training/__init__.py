"""dfwatch training: dataset indexing, cached feature extraction, head training, evaluation, export."""
