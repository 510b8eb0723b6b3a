"""What a suite writes: claims.md, claims.csv, the runs table, the verdicts logged to MLflow, and the plots."""
