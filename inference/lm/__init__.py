"""The 5 Hz language model that plans a song before the DiT renders it (docs/lm.md), with ``transformers``.

``load.py`` loads it; ``prompts.py`` builds the exact prompt bytes; ``constraints.py`` keeps the metadata
it writes valid; ``sampling.py`` is the decoding loop (CFG, top-k, top-p, temperature); ``parse.py`` reads
its output; ``planner.py`` puts the phases together for generation, ``format_input`` and ``sample_query``.
"""
