"""Layer 0: reading inputs (files, catalogs, flags) into specs. The only place files are parsed."""
