"""Command line: `python -m llmlab setup | assets status | assets fetch [NAME...]`."""

from __future__ import annotations

import argparse
import sys
import time

from llmlab import assets


class ProgressBar:
    """A one-line text progress bar; plain lines when the output is not a terminal."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last_message = ""
        self.started = time.monotonic()

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {fraction * 100:5.1f}%  {message}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            self.stream.flush()
        elif message != self.last_message:
            self.stream.write(line + "\n")
            self.stream.flush()
        self.last_message = message

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"done in {time.monotonic() - self.started:.1f} s\n")
        self.stream.flush()


def status_table(deep: bool = False) -> str:
    rows = [("pack", "kind", "size", "state", "problem")]
    for item in assets.status_all(deep=deep):
        problems = "; ".join(f.problem for f in item.files if f.problem and f.present)
        rows.append(
            (
                item.pack.name,
                item.pack.kind,
                assets.human_size(item.pack.size),
                item.state,
                problems,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"cache: {assets.cache_dir()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="fetch every offline pack and convert the offline models")
    asset_parser = commands.add_parser("assets", help="offline packs")
    asset_commands = asset_parser.add_subparsers(dest="action", required=True)
    status_parser = asset_commands.add_parser("status", help="table of packs")
    status_parser.add_argument("--deep", action="store_true", help="re-hash every file")
    fetch_parser = asset_commands.add_parser("fetch", help="fetch packs (all when none named)")
    fetch_parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)

    try:
        if args.command == "assets" and args.action == "status":
            print(status_table(deep=args.deep))
            return 0
        if args.command == "assets" and args.action == "fetch":
            bar = ProgressBar()
            assets.fetch_all(args.names or None, progress=bar)
            bar.done()
            print(status_table())
            return 0
        if args.command == "setup":
            from llmlab import models

            bar = ProgressBar()
            assets.fetch_all(progress=bar)
            bar.done()
            bar = ProgressBar()
            models.prepare_offline(progress=bar)
            bar.done()
            print(status_table())
            return 0
    except (assets.AssetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
