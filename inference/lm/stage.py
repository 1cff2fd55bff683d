"""What the LM does to a generation request before the DiT runs, and who wins when values disagree.

Order: ``sample_query`` writes caption, lyrics and metas from a description; ``use_format`` rewrites the
caption and lyrics; then the plan (phase 1) fills the metas still missing, when ``thinking`` is on or no
duration was given (a source-audio task is as long as its source: that needs no plan); then, with
``thinking``, the audio codes (phase 2; none for a source-audio task, which its source conditions, as upstream
runs no LM for those). For every value an explicit user
value wins, then the LM's, then the default - including the vocal language, which upstream never passes on.
The LM's rewritten caption reaches the DiT when ``thinking``, ``use_format`` or ``sample_query`` asked for it;
with ``thinking`` alone phase 2 sees the caller's own caption, as the checkpoints were trained; after
``use_format`` or ``sample_query`` it sees the rewritten caption and lyrics.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from inference.contract.audio_codes import CODES_PER_SECOND, NO_AUDIO_TOKENIZER, code_tokens
from inference.contract.vocabulary import MIN_DURATION_S, SOURCE_AUDIO_TASKS
from inference.errors import UnsupportedError
from inference.lm.planner import LmPlanner
from inference.lm.sampling import Sampling
from inference.contract import DEFAULT_DURATION_S, GenerateRequest, SongFields


@dataclass
class Prepared:
    request: GenerateRequest
    codes: str | None = None
    lm_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    lm_tokens: int = 0


def user_metas(request: SongFields) -> dict:
    """The metadata the caller gave, in the LM's names; these always win over the LM's plan."""
    given = request.model_fields_set
    metas = {}
    if request.bpm is not None:
        metas["bpm"] = request.bpm
    if request.key_scale:
        metas["keyscale"] = request.key_scale
    if request.time_signature:
        metas["timesignature"] = request.time_signature
    if request.audio_duration is not None:
        metas["duration"] = request.audio_duration  # the LM's prompt and plan write it as an int
    if "vocal_language" in given and request.vocal_language != "unknown":
        metas["language"] = request.vocal_language
    return metas


def prepare(planner: LmPlanner | None, request: GenerateRequest, supports_codes: bool) -> Prepared:
    given_codes = request.audio_code_string  # the caller's own codes: the LM writes none
    if given_codes and not supports_codes:
        raise UnsupportedError(NO_AUDIO_TOKENIZER)
    if planner is None:
        if request.sample_query.strip():
            raise UnsupportedError("sample_query needs the 5 Hz LM, which this worker has not loaded "
                                   "(ACESTEP_LM_MODEL); send a prompt and lyrics instead")
        notes = []
        if request.thinking:
            notes.append("thinking was requested but no 5 Hz LM is loaded: generated without an LM plan")
        if request.use_format:
            notes.append("use_format was requested but no 5 Hz LM is loaded: caption and lyrics used as given")
        return Prepared(request, codes=given_codes, warnings=notes)

    seeds = request.explicit_seeds
    seed = seeds[0] if seeds else random.randrange(2**32)
    sampling = Sampling(request.lm_temperature, request.lm_top_k, request.lm_top_p, request.lm_cfg_scale,
                        request.lm_repetition_penalty, request.constrained_decoding)
    user = user_metas(request)
    skip = tuple(name for name, wanted in (("caption", request.use_cot_caption),
                                           ("language", request.use_cot_language)) if not wanted)
    lm: dict = {}
    caption, lyrics = request.prompt, request.lyrics
    dit_caption, dit_lyrics = caption, lyrics
    warnings: list[str] = []
    seconds, tokens = 0.0, 0

    def take(run) -> None:
        nonlocal seconds, tokens
        seconds += run.seconds
        tokens += run.tokens
        warnings.extend(run.output.repairs)
        for key, value in run.output.metas().items():
            lm.setdefault(key, value)

    if request.sample_query.strip():
        instrumental = request.lyrics.strip().lower() in ("[inst]", "[instrumental]")  # asked for explicitly
        run = planner.sample(request.sample_query, instrumental, user.get("language"), sampling, seed)
        take(run)
        caption = dit_caption = run.output.caption or caption
        lyrics = dit_lyrics = "[Instrumental]" if instrumental else (run.output.lyrics or lyrics or "[Instrumental]")
    elif request.use_format:
        run = planner.format(caption, lyrics, user, sampling, seed)
        take(run)
        caption = dit_caption = run.output.caption or caption
        lyrics = dit_lyrics = run.output.lyrics or lyrics
    from_source = request.task_type in SOURCE_AUDIO_TASKS and not given_codes  # as long as its source: no plan
    wanted = ("bpm", "keyscale", "timesignature") + (() if from_source else ("duration",))
    needs_length = request.audio_duration is None and not from_source
    if (request.thinking or needs_length) and not all(k in user or k in lm for k in wanted):
        run = planner.plan(caption, lyrics, {**{k: v for k, v in lm.items() if k != "caption"}, **user}, sampling,
                           seed, skip)
        take(run)
        if not request.use_cot_caption:  # a free plan may still write one: not wanted
            lm.pop("caption", None)
        if request.thinking and lm.get("caption") and not (request.sample_query or request.use_format):
            dit_caption = lm["caption"]

    if not request.use_cot_language:  # whichever LM run said one (a free plan, format, sample): not wanted
        lm.pop("language", None)
    final = {k: user.get(k, lm.get(k)) for k in ("bpm", "keyscale", "timesignature", "duration", "language")}
    duration = float(final["duration"] or DEFAULT_DURATION_S)
    update = {"prompt": dit_caption, "lyrics": dit_lyrics, "bpm": final["bpm"], "key_scale": final["keyscale"] or "",
              "time_signature": final["timesignature"] or "",
              "audio_duration": request.audio_duration if from_source else duration,
              "vocal_language": final["language"] or request.vocal_language}
    codes = given_codes
    if request.thinking and from_source:
        warnings.append(f"thinking writes no audio codes for a {request.task_type}: its source audio conditions "
                        f"the song (the plan filled the metadata only)")
    elif request.thinking and not given_codes:
        if supports_codes:
            cot = {**{k: v for k, v in final.items() if v is not None}, "duration": int(duration)}
            if lm.get("caption"):
                cot["caption"] = lm["caption"]
            run = planner.codes(caption, lyrics, cot, duration, sampling, request.lm_negative_prompt, seed)
            seconds += run.seconds
            tokens += run.tokens
            codes = run.output.codes or None
            written = len(code_tokens(codes or ""))
            if not sampling.constrained and written != int(duration * CODES_PER_SECOND):
                # free decoding writes as many codes as it likes; the codes decide the length, as upstream reads them
                if written >= MIN_DURATION_S * CODES_PER_SECOND:
                    duration = written / CODES_PER_SECOND
                    update["audio_duration"] = duration
                    warnings.append(f"with constrained_decoding off the LM wrote {written} audio codes: the song "
                                    f"is {duration:g} s long")
                else:
                    codes = None
                    warnings.append(f"with constrained_decoding off the LM wrote {written} audio codes, too few for "
                                    f"a song: generated without them")
        else:
            warnings.append("this checkpoint has no audio tokenizer, so it cannot take audio codes: thinking "
                            "planned the metadata only")
    return Prepared(request.model_copy(update=update), codes, seconds, warnings, tokens)
