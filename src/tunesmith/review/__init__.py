"""After the fact: HTML reports, run comparisons, registry tables and curves, read from run directories."""
