"""Statistics free of MLflow and torch: paired and Welch intervals, the decision rules' tests and
the ladder's contrasts."""
