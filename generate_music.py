"""``python generate_music.py``: the ACE-Step command-line client (same as ``acestep-generate``)."""

import sys

from client.generate_music import main

if __name__ == "__main__":
    sys.exit(main())
