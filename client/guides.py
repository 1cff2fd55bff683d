"""The writing guides the command line prints with --show-lyrics-help and --show-caption-help."""

LYRICS_HELP = """\
How to write lyrics for ACE-Step

Structure tags, each on its own line, mark the sections of the song:
  [Intro]  [Verse 1]  [Verse 2]  [Pre-Chorus]  [Chorus]  [Bridge]  [Drop]  [Break]  [Outro]
Under each tag, one sung line per line of text; leave a blank line between sections.

  [Verse 1]
  Streetlights hum a quiet tune
  Paper boats beneath the moon

  [Chorus]
  Hold on, hold on, the night is young
  Every song is still unsung

Tips:
  - Short verses (2 to 4 lines) and a repeated chorus give the clearest songs.
  - An instrumental: no lyrics at all, or just [inst] / [instrumental].
  - Sections without singing inside a song: [Instrumental], [Solo], [Break].
  - Sing in another language by writing the lyrics in it; the API also takes vocal_language.
  - With --lyrics, write \\n for a new line; or keep the lyrics in a file and use --lyrics-file.
"""

CAPTION_HELP = """\
How to write a caption (the style of the song)

Describe, in one or two sentences:
  - genre and era          (synthwave, 90s hip-hop, baroque, indie folk)
  - instruments            (warm Rhodes piano, 808 bass, fingerpicked guitar, string quartet)
  - mood and energy        (melancholic, euphoric, laid-back, driving)
  - tempo feel             (slow ballad, mid-tempo groove, 140 bpm drum and bass)
  - voice                  (breathy female vocals, gravelly baritone, choir, no vocals)
  - production             (lo-fi tape hiss, polished radio mix, cavernous reverb)

Examples:
  "Dreamy synthwave with analog pads, gated drums and airy female vocals, nostalgic and warm"
  "Acoustic folk ballad, fingerpicked guitar and soft cello, intimate male vocals, slow"
  "High-energy drum and bass, rolling sub bass, chopped vocal samples, 174 bpm"

Be concrete: named instruments and moods work better than adjectives like "good" or "nice".
"""
