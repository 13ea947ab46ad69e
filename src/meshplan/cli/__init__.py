"""The command line: thin, on top of everything else."""
