"""A4PS infrastructure, the lowest layer (it imports no app): settings, config files, live updates,
atomic files, the broker and the process supervisor."""
