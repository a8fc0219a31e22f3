"""Layer changesets: tar streams applied into (and, later, diffed from) overlay layer dirs."""
