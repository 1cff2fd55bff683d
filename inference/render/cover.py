"""A cover below full strength, as upstream renders it: the cover's condition for the first
``int(steps * audio_cover_strength)`` steps, then text2music's for the rest (the default instruction, and
silence in place of the source in the DiT's context latents).

diffusers' pipeline would instead run both conditions at every step and blend their velocities (twice the DiT
calls, and another result), so it is given strength 1 and the condition is switched here, for one pipeline call:
the text2music condition is encoded beside the cover's (the same caption, lyrics, metas and timbre, the
text2music instruction), and from the switching step on the DiT gets it (with the learned null condition beside
it when a base model guides) and silence as its source.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from inference.render.patching import replaced

TEXT2MUSIC_INSTRUCTION_TASK = "text2music"


class CoverSwitch:
    def __init__(self, strength: float):
        self.strength = strength
        self.text2music: torch.Tensor | None = None  # the text2music condition's encoder states
        self.switched: dict | None = None  # the DiT's condition and context after the switch: the same every step
        self.calls = 0

    @contextmanager
    def observe(self, pipe) -> Iterator[None]:
        from diffusers.pipelines.ace_step.pipeline_ace_step import TASK_INSTRUCTIONS

        encode_prompt, encode_conditions = pipe.encode_prompt, pipe.condition_encoder.forward
        transformer = pipe.transformer.forward
        asked: dict = {}

        def prompt(*args, **kwargs):
            if not asked:
                asked.update(kwargs)
            return encode_prompt(*args, **kwargs)

        def conditions(*args, **kwargs):
            out = encode_conditions(*args, **kwargs)
            if self.text2music is None and asked:
                text, text_mask, lyric, lyric_mask = encode_prompt(
                    **{**asked, "instruction": TASK_INSTRUCTIONS[TEXT2MUSIC_INSTRUCTION_TASK]})
                self.text2music = encode_conditions(**{**kwargs, "text_hidden_states": text,
                                                       "text_attention_mask": text_mask,
                                                       "lyric_hidden_states": lyric,
                                                       "lyric_attention_mask": lyric_mask})[0]
            return out

        def denoise(*args, **kwargs):
            switch_at = int(len(pipe.scheduler.timesteps) * self.strength)
            if self.calls >= switch_at:
                if self.text2music is None:  # the pipeline changed under us: say so rather than cover at full strength
                    raise RuntimeError("the cover could not observe the pipeline's prompt to switch its condition")
                if self.switched is None:
                    self.switched = self._switched(pipe, kwargs)
                kwargs = {**kwargs, **self.switched}
            self.calls += 1
            return transformer(*args, **kwargs)

        with replaced(pipe, encode_prompt=prompt), replaced(pipe.condition_encoder, forward=conditions), \
                replaced(pipe.transformer, forward=denoise):
            yield

    def _switched(self, pipe, kwargs: dict) -> dict:
        """The text2music condition (with the null one beside it when guiding) and silence as the source."""
        states, context = kwargs["encoder_hidden_states"], kwargs["context_latents"]
        text2music = self.text2music.to(states.dtype)
        if states.shape[0] == 2 * text2music.shape[0]:  # guided: the null condition beside it
            null = pipe.condition_encoder.null_condition_emb.to(states.device, states.dtype).expand_as(text2music)
            text2music = torch.cat([text2music, null], dim=0)
        channels = context.shape[-1] // 2
        silence, _ = pipe.prepare_src_latents(device=context.device, dtype=context.dtype, batch_size=1,
                                              latent_length=context.shape[1])
        context = torch.cat([silence.expand(context.shape[0], -1, -1), context[..., channels:]], dim=-1)
        return {"encoder_hidden_states": text2music, "context_latents": context}
