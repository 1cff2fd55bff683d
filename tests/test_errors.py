"""What a caller sees when something fails: one line, no local path, no secret."""

from inference.errors import InputError, public_message, redact


def test_paths_urls_with_credentials_and_signatures_are_scrubbed():
    text = ("failed reading /app/checkpoints/acestep-v15-turbo/vae/x.safetensors via "
            "https://user:pw@host/b?X-Amz-Signature=abc123&X-Amz-Credential=AKIA/2026 with key sk-12345")
    clean = redact(text, secrets=("sk-12345",))
    assert "/app/checkpoints" not in clean and "pw@" not in clean and "abc123" not in clean
    assert "sk-12345" not in clean and "AKIA" not in clean


def test_unexpected_errors_are_named_and_one_line():
    message = public_message(KeyError("missing\nthing at /tmp/x/y"))
    assert message.startswith("internal error (KeyError") and "\n" not in message and "/tmp/x" not in message


def test_our_errors_pass_through_verbatim():
    assert public_message(InputError("bpm must be between 30 and 300 (got 500)")) == \
        "bpm must be between 30 and 300 (got 500)"
