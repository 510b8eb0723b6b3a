"""The lecture's claims as data, a runner for any claims table, verdicts and reports."""
