"""The values the contract allows: formats, tasks, keys, languages, and the limits every deployment shares."""

from __future__ import annotations

AUDIO_FORMATS = ("mp3", "wav", "wav32", "flac", "ogg", "opus")
NOT_PRODUCED_FORMATS = ("aac", "m4a")  # upstream formats this worker has no encoder for
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "wav32": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
}
FILE_EXTENSIONS = {fmt: "wav" if fmt == "wav32" else fmt for fmt in AUDIO_FORMATS}
SAMPLE_FROM_NOTHING = "NO USER INPUT"
TRACK_NAMES = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass", "drums",
               "backing_vocals", "vocals")
MAX_INSTRUCTION_CHARS = 1_000
TASK_TYPES = ("text2music", "repaint", "cover", "extract", "lego", "complete")
BASE_MODEL_TASKS = ("extract", "lego", "complete")
SOURCE_AUDIO_TASKS = ("repaint", "cover", "extract", "lego", "complete")
VALID_TIME_SIGNATURES = ("2", "3", "4", "6")
TIME_SIGNATURE_FORMS = {"2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}
KEY_NOTES = ("A", "B", "C", "D", "E", "F", "G")
KEY_ACCIDENTALS = ("", "#", "b", "♯", "♭")
VALID_KEYSCALES = tuple(f"{n}{a} {m}" for n in KEY_NOTES for a in KEY_ACCIDENTALS for m in ("major", "minor"))
VALID_LANGUAGES = (
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr",
    "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro",
    "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh",
    "unknown",
)
INSTRUMENTAL_LYRICS = ("", "[inst]", "[instrumental]")

MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S = 10.0, 600.0, 60.0
MAX_BATCH_SIZE = 8
MAX_STEPS_TURBO, MAX_STEPS = 20, 200
SEED_MAX = 2**32 - 1
MAX_PROMPT_CHARS = 4_000
MAX_LYRICS_CHARS = 12_000
MAX_AUDIO_INPUT_BYTES = 30 * 1024 * 1024
MIN_AUDIO_INPUT_RATE, MAX_AUDIO_INPUT_RATE = 8_000, 192_000  # Hz
MAX_AUDIO_INPUT_CHANNELS = 8
AUDIO_INPUT_FIELDS = ("src_audio_base64", "reference_audio_base64")
AUDIO_URL_FIELDS = {"src_audio_url": "src_audio_base64", "reference_audio_url": "reference_audio_base64"}
MAX_URL_CHARS = 2048
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's length when the header does not say (a streamed FLAC)
