"""Clients of the ACE-Step API: ``generate_music`` is the command line (``acestep-generate``)."""
