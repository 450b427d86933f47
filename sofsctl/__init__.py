"""sofsctl: the admin command line on top of every layer (see :mod:`sofsctl.main`)."""
