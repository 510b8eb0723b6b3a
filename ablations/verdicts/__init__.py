"""From runs to verdicts: the rule registry, the evidence registry and the judge that applies them to a claim."""
