"""LoRA adapters per request, through the worker's own path (``GpuWorker``: admission, batching, the GPU thread):
an adapter changes the song, scale 0 and no adapter are the same song, a job without LoRA never hears another
job's, both file layouts play at their trained strength, and every bad adapter is a one-line refusal."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
import torch

from inference.errors import InputError
from inference.gpu_worker import GpuWorker
from inference.load import load_pipeline
from inference.service import GenerationService
from inference.settings import Settings
from tests.lora_files import as_bytes, diffusers_file, peft_lora, upstream_folder


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("loras")


@pytest.fixture(scope="module")
def worker(checkpoint_dir, lora_dir, tmp_path_factory):
    """A worker of its own: adapters go into its DiT, not into the session's shared pipeline."""
    settings = Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_dir, ACESTEP_WARMUP=False, ACESTEP_LORA_DIR=lora_dir,
                        ACESTEP_ALLOW_PRIVATE_ENDPOINTS=True, ACESTEP_LORA_MAX_MB=1,
                        ACESTEP_UNDELIVERED_DIR=tmp_path_factory.mktemp("undelivered"))
    return GpuWorker(GenerationService(load_pipeline(settings), settings))


@pytest.fixture(scope="module")
def adapters(worker, lora_dir):
    """``style`` (diffusers' file, alpha 8 on rank 4: twice as strong as alpha = rank) and ``other``."""
    transformer = worker.service.loaded.pipe.transformer
    style = peft_lora(transformer, seed=1)
    diffusers_file(style, lora_dir / "style.safetensors", alpha=8)
    diffusers_file(peft_lora(transformer, seed=2), lora_dir / "other" / "pytorch_lora_weights.safetensors")
    return {"style": style}


def job(**fields) -> dict:
    return {"prompt": "warm synth pad", "lyrics": "[inst]", "audio_duration": 10, "batch_size": 1,
            "inference_steps": 2, "audio_format": "wav32", "seed": 7, **fields}


def song(worker, **fields) -> np.ndarray:
    return asyncio.run(_song(worker, **fields))


async def _song(worker, **fields) -> np.ndarray:
    response = await worker.generate(job(**fields), "lora-job")
    audio, _ = sf.read(io.BytesIO(base64.b64decode(response.audios[0].base64)), dtype="float32")
    return audio


def refusal(worker, lora) -> str:
    with pytest.raises(InputError) as caught:
        song(worker, lora=lora)
    message = str(caught.value)
    assert "\n" not in message and "/tmp" not in message
    return message


def test_an_adapter_changes_the_song_and_none_or_scale_zero_is_the_song_without(worker, adapters):
    before = song(worker)
    styled = song(worker, lora="style")
    assert np.abs(styled - before).max() > 1e-3
    assert np.array_equal(song(worker, lora={"name": "style", "scale": 0}), before)
    assert np.array_equal(song(worker), before)  # after a LoRA job: the same song, to the bit
    assert not np.array_equal(song(worker, lora={"name": "style", "scale": 0.5}), styled)


def test_the_trainers_folder_and_diffusers_file_play_at_their_trained_strength(worker, adapters, lora_dir):
    """The same adapter as ACE-Step's trainer saves it (original names, alpha in adapter_config.json) and as
    diffusers does (alpha in the file's metadata) is the same song; without its alpha it would be half as strong."""
    upstream_folder(adapters["style"], lora_dir / "style-trainer", alpha=8)
    as_diffusers = song(worker, lora="style")
    assert np.allclose(song(worker, lora="style-trainer"), as_diffusers, atol=1e-6)
    diffusers_file(adapters["style"], lora_dir / "style-alpha-as-rank.safetensors")  # no alpha: scaling 1
    assert np.allclose(song(worker, lora="style-alpha-as-rank"), song(worker, lora={"name": "style", "scale": 0.5}),
                       atol=1e-6)


def test_two_jobs_with_different_adapters_in_flight_each_get_their_own(worker, adapters):
    alone = {name: song(worker, lora=name) for name in ("style", "other")}
    plain = song(worker)

    async def together():
        return await asyncio.gather(_song(worker, lora="style"), _song(worker, lora="other"), _song(worker))

    styled, other, without = asyncio.run(together())
    assert np.array_equal(styled, alone["style"]) and np.array_equal(other, alone["other"])
    assert np.array_equal(without, plain)


def test_jobs_batch_together_only_with_the_same_adapters_at_the_same_scales(worker, adapters):
    service = worker.service

    def key(**fields):
        staged = service.plan(service.admit(job(**fields), "k"))
        return service.batch_key(staged)

    assert key(lora="style") == key(lora={"name": "style", "scale": 1.0})
    assert key(lora="style") != key(lora={"name": "style", "scale": 0.5})
    assert key(lora="style") != key(lora="other") != key()
    assert key(lora={"name": "style", "scale": 0}) == key()  # off is the same as none


def test_a_second_request_for_an_adapter_reads_nothing_whatever_it_is_called(worker, adapters, lora_dir):
    library = worker.service.lora
    song(worker, lora="other")
    reads = library.reads
    song(worker, lora="other")
    assert library.reads == reads  # the same file, unchanged: not read again
    data = (lora_dir / "other" / "pytorch_lora_weights.safetensors").read_bytes()
    with serving(data) as url:  # the same bytes by URL: fetched, known by their digest, not parsed again
        song(worker, lora={"url": url})
    assert library.reads == reads


def test_an_adapter_from_the_jobs_bucket(worker, adapters, s3_server, bucket):
    from tests.conftest import s3_client

    s3_client(s3_server).put_object(Bucket=bucket, Key="loras/style.safetensors", Body=as_bytes(adapters["style"]))
    s3_config = {"endpointUrl": s3_server, "accessId": "testing", "accessSecret": "testing", "bucketName": bucket}
    response = asyncio.run(worker.generate(job(lora={"path": f"s3://{bucket}/loras/style.safetensors"}), "b",
                                           s3_config))
    assert response.audios[0].url  # delivered to the bucket as usual


def test_bad_adapters_are_one_line_refusals_naming_the_field_and_the_worker_keeps_serving(worker, adapters,
                                                                                          lora_dir):
    transformer = worker.service.loaded.pipe.transformer
    assert refusal(worker, "missing") == "lora[0].name: no adapter 'missing' in ACESTEP_LORA_DIR"
    assert "lora[0].name must be a file or folder name" in refusal(worker, "../etc/passwd")
    assert refusal(worker, {"name": "style", "scale": 2.5}) == "lora[0].scale must be between 0 and 2 (got 2.5)"
    assert "give exactly one of name, path or url" in refusal(worker, {"name": "style", "url": "https://x.org/a"})

    (lora_dir / "pickled.safetensors").write_bytes(_pickle(adapters["style"]))
    assert "a pickle (.bin, .pt, .ckpt) is never loaded" in refusal(worker, ["style", "pickled"])

    (lora_dir / "noise.safetensors").write_bytes(b"\x10" * 300)
    assert refusal(worker, "noise") == "lora[0]: not a safetensors file"

    elsewhere = {k.replace("layers.0.", "layers.9."): v for k, v in adapters["style"].items()}
    diffusers_file(elsewhere, lora_dir / "wrong-keys.safetensors")
    assert "not a LoRA for this model: 'transformer.layers.9." in refusal(worker, "wrong-keys")

    wider = peft_lora(_wider(transformer), seed=3)
    diffusers_file(wider, lora_dir / "wrong-shapes.safetensors")
    assert "not a LoRA for this model: layers.0.cross_attn.to_k is 16x32" in refusal(worker, "wrong-shapes")

    big = {**adapters["style"], "layers.0.mlp.up_proj.lora_A.weight": torch.zeros(4, 32),
           "layers.0.mlp.up_proj.lora_B.weight": torch.zeros(64, 4), "padding": torch.zeros(300_000)}
    diffusers_file(big, lora_dir / "huge.safetensors")
    assert refusal(worker, "huge") == "lora[0] must be at most 1 MiB of adapter"

    assert "the same adapter as an earlier one" in refusal(worker, ["style", {"name": "style", "scale": 0.3}])
    assert song(worker).shape == (480_000, 2)  # and the worker goes on


def test_a_tiny_cache_drops_adapters_not_in_use_and_the_song_without_stays_the_same(checkpoint_dir, lora_dir,
                                                                                   adapters, tmp_path):
    settings = Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_dir, ACESTEP_WARMUP=False, ACESTEP_LORA_DIR=lora_dir,
                        ACESTEP_LORA_CACHE=0, ACESTEP_UNDELIVERED_DIR=tmp_path)
    small = GpuWorker(GenerationService(load_pipeline(settings), settings))
    before = song(small)
    song(small, lora="style")
    assert len(small.service.lora.kept()) == 1  # in use: kept through its own render
    after = song(small)
    assert small.service.lora.kept() == []
    assert small.service.loaded.pipe.get_list_adapters().get("transformer", []) == []
    assert np.array_equal(after, before)


def _pickle(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _wider(transformer):
    """A copy of the DiT whose cross-attention keys take 32 outputs instead of 16: an adapter made for another
    model's shapes."""
    import copy

    other = copy.deepcopy(transformer)
    for layer in other.layers:
        layer.cross_attn.to_k = torch.nn.Linear(32, 32, bias=False)
    return other


class serving:
    """``data`` on a local HTTP server for the length of a ``with``."""

    def __init__(self, data: bytes):
        body = data

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}/adapter.safetensors"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_safetensors_file_is_never_mistaken_for_a_pickle():
    """A safetensors file starts with its header's length: one whose low byte is 0x80 (a pickle's first byte)
    is still read as what it is."""
    from safetensors.torch import save

    from inference.lora.adapter import read_safetensors

    for length in range(1, 300):
        data = save({"k" * length: torch.zeros(1)})
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    tensors, _ = read_safetensors(data, "lora[0]")
    assert list(tensors) == ["k" * length]


def test_the_trainers_alphas_apply_as_peft_applies_them(worker, adapters):
    """``alpha_pattern`` keys match a module by its name or a dotted suffix (the trainer's original names too),
    PEFT's default alpha is 8 when its config gives none, and rsLoRA scales by alpha / sqrt(rank)."""
    from safetensors.torch import save

    from inference.lora.adapter import parse_adapter

    service = worker.service
    state = adapters["style"]  # rank 4
    original = {k.replace(".to_q.", ".q_proj.").replace(".to_k.", ".k_proj."): v for k, v in state.items()}
    data = save({f"base_model.model.{k}": v.contiguous() for k, v in original.items()})

    def gain(config, module="layers.0.self_attn.to_q", part="lora_B"):
        adapter = parse_adapter(data, "lora[0]", service.lora.shapes, config)
        source = state[f"{module}.{part}.weight"]
        return float(adapter.tensors[f"{module}.{part}.weight"].sum() / source.sum())

    assert gain({"lora_alpha": 8, "alpha_pattern": {"q_proj": 16}}) == pytest.approx(16 / 4)
    assert gain({"lora_alpha": 8, "alpha_pattern": {"q_proj": 16}}, "layers.1.cross_attn.to_k") == pytest.approx(2)
    assert gain({"lora_alpha": 8, "alpha_pattern": {"self_attn.to_q": 12}}) == pytest.approx(3)
    assert gain({"peft_type": "LORA"}) == pytest.approx(8 / 4)  # no lora_alpha: PEFT's default, 8
    assert gain({"lora_alpha": 8, "use_rslora": True}) == pytest.approx(8 / 2)
    assert gain({"lora_alpha": 8}, part="lora_A") == pytest.approx(1)
