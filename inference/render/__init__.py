"""What a render does on top of diffusers' pipeline, for one call, to render what upstream ACE-Step renders:
the source task's layout (``source_task``), the per-step corrections (``sampler_steps``: DCW in ``dcw``, the
repaint's injection and crossfade in ``repaint``), the cover's condition switch (``cover``), the pipeline's own
rounding fixed (``pipeline_fixes``); every method they replace is put back after the call (``patching``).
``call`` chooses which of them a batch's pipeline call is wrapped in."""
