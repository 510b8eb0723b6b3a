"""Running a claims table: the plan, the cost probe and budget, run leases, training the runs,
lr tuning and the suite."""
