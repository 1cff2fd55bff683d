"""LoRA adapters per request: ``files`` finds the bytes, ``adapter`` checks them against the DiT, ``library``
keeps them and applies a batch's adapters on the GPU thread."""
