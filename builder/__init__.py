"""What the Docker build runs: fetch the checkpoints, convert them to the diffusers layout, verify them.

    python -m builder.fetch_checkpoints --dest /build/src --dit acestep-v15-turbo --lm acestep-5Hz-lm-1.7B
    python -m builder.convert --source /build/src --dit acestep-v15-turbo --out /app/checkpoints
    python -m builder.verify /app/checkpoints/acestep-v15-turbo
"""
