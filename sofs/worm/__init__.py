"""WORM retention for sofs volumes (issue 12): the compliance clock retention is judged by
(:mod:`.clock`), a domain's policy and its retention arithmetic (:mod:`.policy`), the records a
volume keeps (:mod:`.records`) and the rules the filesystem applies before every change
(:mod:`.rules`). Holds, privileged deletes, trash and snapshots come next."""
