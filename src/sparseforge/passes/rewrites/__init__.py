"""Graph rewrites: passes that change the model (sparse ops, channel removal, pruning)."""
