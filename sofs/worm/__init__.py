"""WORM retention for sofs volumes (issue 12). Here so far: the compliance clock retention is
judged by (:mod:`.clock`) and a domain's policy with its retention arithmetic
(:mod:`.policy`). Domains in the metadata, commit, enforcement and holds come next."""
