"""Out-of-distribution quality: signals → one logit → temperature-scaled score in [0, 1], with reasons."""
