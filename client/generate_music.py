"""``acestep-generate``: submit a song to an ACE-Step API, wait for it with a progress bar, download it.

    acestep-generate --api-url http://localhost:8000 -c "dreamy synthwave" -f lyrics.txt -d 60 -b 2 -o dance.mp3

With a batch the files are numbered (``dance_1.mp3``, ``dance_2.mp3``). The saved paths are printed, one per
line, on standard output; progress and messages go to standard error. Any failure prints one clear line
and exits non-zero. Only the standard library is used, so the file also runs on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

try:
    from client.guides import CAPTION_HELP, LYRICS_HELP
except ImportError:  # run as a lone file
    CAPTION_HELP = LYRICS_HELP = "See the project's README."

USER_AGENT = "acestep-generate/1.0"
FORMATS = ("mp3", "wav", "flac", "ogg", "opus")
EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acestep-generate", description="Generate songs with an ACE-Step 1.5 API and download them.",
        epilog="Guides: --show-caption-help, --show-lyrics-help.")
    parser.add_argument("--api-url", default=os.environ.get("ACESTEP_API_URL", "http://localhost:8000"),
                        help="base URL of the API (default: $ACESTEP_API_URL or http://localhost:8000)")
    parser.add_argument("--caption", "-c", help="the style of the song: genre, instruments, mood, voice")
    lyrics = parser.add_mutually_exclusive_group()
    lyrics.add_argument("--lyrics", "-l", help=r"lyrics with [Verse]/[Chorus] tags; \n for a new line")
    lyrics.add_argument("--lyrics-file", "-f", type=Path, help="read the lyrics from this text file")
    parser.add_argument("--duration", "-d", type=float, default=60.0, help="seconds of audio, 10-600 (default 60)")
    parser.add_argument("--batch-size", "-b", type=int, default=1, help="songs to make, 1-8 (default 1)")
    parser.add_argument("--output", "-o", type=Path, default=Path("output.mp3"),
                        help="file to write (default output.mp3); a batch is numbered: output_1.mp3, ...; "
                             "an existing folder gets song.<format> inside it")
    parser.add_argument("--seed", help='a seed or "s1,s2" (one per song) for repeatable results')
    parser.add_argument("--format", choices=FORMATS, help="audio format (default: the --output suffix, else mp3)")
    parser.add_argument("--api-key", default=os.environ.get("ACESTEP_API_KEY"),
                        help="API key, sent as a Bearer token (default: $ACESTEP_API_KEY)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between status checks (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default 900)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output, only the saved paths")
    parser.add_argument("--show-lyrics-help", action="store_true", help="how to write lyrics, then exit")
    parser.add_argument("--show-caption-help", action="store_true", help="how to write a caption, then exit")
    return parser


class Api:
    def __init__(self, base_url: str, api_key: str | None):
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _open(self, path: str, body: Any = None, timeout: float = 60.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=self.headers,
                                         method="POST" if data is not None else "GET")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            raise CliError(f"{path.split('?')[0]} answered HTTP {err.code}: {_message(err.read())}") from None
        except urllib.error.URLError as err:
            raise CliError(f"cannot reach {self.base_url}: {err.reason}") from None
        except TimeoutError:
            raise CliError(f"{self.base_url} did not answer within {timeout:.0f} s") from None

    def call(self, path: str, body: Any = None) -> Any:
        with self._open(path, body) as response:
            envelope = json.loads(response.read())
        if envelope.get("code", 200) != 200 or envelope.get("error"):
            raise CliError(f"{path} failed: {envelope.get('error')}")
        return envelope.get("data")

    def download(self, file_path: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with self._open(file_path, timeout=300.0) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 16):
                out.write(chunk)
        partial.replace(target)


def _message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        return str(data.get("error") or data.get("detail") or data)
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200]


class Progress:
    """A one-line bar on standard error (plain lines when it is not a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, fraction: float, text: str, elapsed: float) -> None:
        if self.quiet:
            return
        filled = int(round(max(0.0, min(1.0, fraction)) * 30))
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}% {text} ({elapsed:.0f} s)"
        if self.tty:
            print("\r" + line.ljust(len(self.last)), end="", file=sys.stderr, flush=True)
        elif line.split("(")[0] != self.last.split("(")[0]:
            print(line, file=sys.stderr, flush=True)
        self.last = line

    def done(self) -> None:
        if self.tty and self.last and not self.quiet:
            print(file=sys.stderr)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def output_paths(output: Path, count: int, audio_format: str) -> list[Path]:
    if output.is_dir():
        output = output / f"song.{audio_format}"
    if not output.suffix:
        output = output.with_suffix(f".{audio_format}")
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(1, count + 1)]


def wait_until_ready(api: Api, progress: Progress, timeout: float) -> None:
    """A server that is still loading its model answers /health with 503 'starting': wait for it."""
    started = time.monotonic()
    while True:
        try:
            api.call("/health")
            return
        except CliError as err:
            if "starting" not in str(err) and "loading" not in str(err):
                raise
        if time.monotonic() - started > timeout:
            raise CliError(f"the server was still loading its model after {timeout:.0f} s", EXIT_TIMEOUT)
        progress.say("waiting for the server to load its model...")
        time.sleep(2.0)


def run(args: argparse.Namespace) -> list[Path]:
    if not args.caption and not args.lyrics and not args.lyrics_file:
        raise CliError("give a --caption (and optionally --lyrics or --lyrics-file); see --show-caption-help",
                       EXIT_USAGE)
    lyrics = ""
    if args.lyrics_file:
        try:
            lyrics = args.lyrics_file.read_text(encoding="utf-8")
        except OSError as err:
            raise CliError(f"cannot read the lyrics file {args.lyrics_file}: {err.strerror}", EXIT_USAGE) from None
    elif args.lyrics:
        lyrics = args.lyrics.replace("\\n", "\n")
    suffix = args.output.suffix.lstrip(".").lower()
    audio_format = args.format or (suffix if suffix in FORMATS else "mp3")

    api = Api(args.api_url, args.api_key)
    progress = Progress(args.quiet)
    body: dict[str, Any] = {"caption": args.caption or "", "lyrics": lyrics, "duration": args.duration,
                            "batch_size": args.batch_size, "audio_format": audio_format}
    if args.seed is not None:
        body["seed"] = args.seed
    wait_until_ready(api, progress, args.timeout)
    task = api.call("/release_task", body)
    task_id = task["task_id"]
    for warning in task.get("warnings", []):
        progress.say(f"note: {warning}")
    progress.say(f"task {task_id} queued at position {task.get('queue_position', '?')}")

    started = time.monotonic()
    while True:
        [item] = api.call("/query_result", {"task_id_list": [task_id]})
        results = json.loads(item.get("result") or "[]")
        elapsed = time.monotonic() - started
        if item["status"] == 1:
            progress.show(1.0, "done", elapsed)
            progress.done()
            break
        if item["status"] == 2:
            progress.done()
            reason = (results[0].get("error") if results else None) or item.get("progress_text") or "no reason given"
            raise CliError(f"generation failed: {reason}")
        fraction = float(results[0].get("progress", 0.0)) if results else 0.0
        progress.show(fraction, item.get("progress_text", ""), elapsed)
        if elapsed > args.timeout:
            progress.done()
            raise CliError(f"gave up after {args.timeout:.0f} s; the task {task_id} may still finish "
                           f"(query it with /query_result)", EXIT_TIMEOUT)
        time.sleep(args.poll_interval)

    files = [r for r in results if r.get("file")]
    if not files:
        raise CliError("the task succeeded but returned no audio files")
    paths = output_paths(args.output, len(files), audio_format)
    seeds = str(files[0].get("seed_value", "")).split(",")
    for index, (result, path) in enumerate(zip(files, paths)):
        api.download(result["file"], path)
        progress.say(f"saved {path}" + (f" (seed {seeds[index]})" if index < len(seeds) and seeds[index] else ""))
    return paths


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show_lyrics_help:
        print(LYRICS_HELP)
        return 0
    if args.show_caption_help:
        print(CAPTION_HELP)
        return 0
    try:
        paths = run(args)
    except CliError as err:
        print(f"acestep-generate: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("acestep-generate: interrupted", file=sys.stderr)
        return 130
    for path in paths:
        print(path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
