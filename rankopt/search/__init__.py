"""rankopt.search."""
