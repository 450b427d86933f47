"""WORM retention for sofs volumes (issue 12): the compliance clock retention is judged by
(:mod:`.clock`); domains, commit, retention and holds come next."""
