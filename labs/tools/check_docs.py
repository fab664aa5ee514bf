#!/usr/bin/env python3
"""Keeps the labs and docs true: every command, flag, pitfall, lab number, test name
and relative link they mention must exist, and the commands marked as checked must
behave as the text says. Run by ctest (label `lab`) as labs_docs_are_true.

What is checked, in every Markdown file under labs/ and docs/:
  * relative links [text](path) point to an existing file or folder;
  * in command blocks (```sh, ```bash, ```console, ```shell), every command that
    names one of our executables exists, and each --flag it uses appears in that
    executable's --help; `--pitfall NAME` names a pitfall the executable lists;
    `labs/check NN` names an existing lab;
  * in inline code, `--pitfall NAME` is some server's pitfall and `Suite.Name`
    names a GoogleTest test that exists in the sources; in the files this course
    owns, an inline `--flag` is a flag of one of our executables;
  * in docs/instructor/mistakes.md, every row of a table names at least one
    check (`Suite.Name`) and every check it names exists (so the list of
    classic mistakes cannot point at a test that was renamed or removed).

Which blocks are run (the info string after the language is not shown by Markdown
renderers, so readers do not see the marks):
  ```sh            run; must exit 0
  ```sh fails      run; must exit non-zero (a "break it" step that shows a failure)
  ```sh server     start in the background; must print "listening on"; stopped with
                   SIGTERM when the next `sh server` block starts or the file ends
  anything else    not run (```bash is for commands a reader runs but the test does
                   not: long builds, servers without a following client, labs/check)
Commands run from a scratch folder that mirrors the repository, where build/release
is the build directory under test; each fixed --port N is replaced by a free port.

Files the commands write. The mirror's top-level entries are symbolic links into the
repository, so a command that wrote to labs/... would write into the repository
itself. The labs therefore write under "${TMPDIR:-/tmp}" (a reader's checkout stays
clean too), and this test points TMPDIR at a fresh folder of the scratch folder for
every Markdown file, so that runs in several build directories at once cannot
overwrite each other's files. As a guard, every picture a file shows (![..](X))
must be byte for byte the same after its blocks ran.

Pictures of the loop. Labs PICTURE_LABS each show a committed picture drawn by
bench/timeline from a trace, and run the command that draws it: their README must
show a picture (a .png of at most MAX_PICTURE_BYTES) and run a `bench/timeline`
command. Every `bench/timeline ... -o OUT` in a run block must leave a PNG (or SVG)
at OUT, deleted before the block runs, so a command that draws nothing fails the
test even when it exits 0. To refresh the committed pictures, run this with
--keep-pictures DIR: it copies what each lab's commands drew into DIR/LAB/, and the
lab's README says which command drew its picture.
"""
import argparse
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND_LANGS = {"sh", "bash", "console", "shell"}
# Flags of tools that are not ours (cmake, ctest, GoogleTest) may appear inline.
FOREIGN_FLAGS = {"--preset", "--workflow", "--build", "--target", "--output-on-failure",
                 "--test-dir", "--list-presets", "--parallel", "--help"}
OWNED = ("labs/", "docs/pitfalls.md", "docs/comparison.md", "docs/README.md",
         "docs/instructor/")

errors = []
MISTAKES = "docs/instructor/mistakes.md"
# The labs that show a picture of their loop, drawn by a command the test runs.
PICTURE_LABS = ("03", "04", "05", "08", "09")
MAX_PICTURE_BYTES = 150_000
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def fail(where, message):
    errors.append(f"{where}: {message}")


def markdown_files(source):
    for top in ("labs", "docs"):
        base = source / top
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.md") if "build" not in p.parts)


def fenced_blocks(text):
    """Yields (line number, language, marks, [lines]) for every fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([^`]*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(2), m.group(3).split()
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        yield start, (info[0] if info else ""), info[1:], body


def outside_fences(text):
    out, inside = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            out.append("")
            continue
        out.append("" if inside else line)
    return "\n".join(out)


class Executables:
    """Finds our executables and caches their --help text."""

    def __init__(self, source, build):
        self.source, self.build = source, build
        self.help_cache = {}
        self.servers = {}  # name -> path
        for path in sorted(build.glob("*/*")):
            if path.is_file() and os.access(path, os.X_OK) and path.parent.name == path.name:
                self.servers[path.name] = path

    def resolve(self, word):
        if word.startswith("build/release/"):
            return self.build / word[len("build/release/"):]
        if word in self.servers:
            return self.servers[word]
        if word in ("labs/check", "labs/tools/client.py", "bench/run", "bench/timeline",
                    "scripts/ensure-deps"):
            return self.source / word
        return None

    def help(self, path):
        if path not in self.help_cache:
            try:
                result = subprocess.run([str(path), "--help"], capture_output=True, text=True,
                                        timeout=60, cwd=self.source)
                self.help_cache[path] = result.stdout + result.stderr
            except (OSError, subprocess.TimeoutExpired) as error:
                self.help_cache[path] = ""
                fail(str(path), f"--help failed: {error}")
        return self.help_cache[path]

    def all_pitfalls(self):
        names = set()
        for path in self.servers.values():
            m = re.search(r"--pitfall TEXT:\{([^}]*)\}", self.help(path))
            if m:
                names.update(n.strip() for n in m.group(1).split(","))
        return names

    def all_flags(self):
        flags = set(FOREIGN_FLAGS)
        paths = list(self.servers.values())
        paths += [self.source / "labs/check", self.source / "labs/tools/client.py",
                  self.source / "labs/tools/check_docs.py"]
        for tool in ("bench/run", "bench/timeline"):
            if (self.source / tool).exists():
                paths.append(self.source / tool)
        for path in paths:
            flags.update(re.findall(r"--[a-z][a-z0-9-]*", self.help(path)))
        return flags


def split_commands(line):
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        return []
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def check_command(where, tokens, exes, labs):
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return
    word = tokens[0]
    path = exes.resolve(word)
    if path is None:
        return
    if not path.exists():
        fail(where, f"{word}: no such executable ({path})")
        return
    if word == "labs/check":
        numbers = [t for t in tokens[1:] if re.fullmatch(r"\d\d", t)]
        if not numbers:
            fail(where, "labs/check without a lab number")
        for number in numbers:
            if number not in labs:
                fail(where, f"labs/check {number}: there is no lab {number}")
    help_text = None
    for i, token in enumerate(tokens[1:], start=1):
        if not token.startswith("--"):
            continue
        flag = token.split("=", 1)[0]
        help_text = help_text if help_text is not None else exes.help(path)
        if not re.search(re.escape(flag) + r"(?![a-z0-9-])", help_text):
            fail(where, f"{word} has no flag {flag} (not in its --help)")
        if flag == "--pitfall":
            value = token.split("=", 1)[1] if "=" in token else (
                tokens[i + 1] if i + 1 < len(tokens) else "")
            m = re.search(r"--pitfall TEXT:\{([^}]*)\}", help_text)
            names = {n.strip() for n in m.group(1).split(",")} if m else set()
            if value not in names:
                fail(where, f"{word} has no pitfall '{value}' (it has: {sorted(names)})")


def picture_outputs(command):
    """The OUT of every `bench/timeline ... -o OUT` (or --out OUT, --out=OUT) in a
    block, as written (quotes removed, variables not yet expanded)."""
    outputs = []
    for line in command.splitlines():
        for tokens in split_commands(line):
            while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
                tokens = tokens[1:]
            if not tokens or tokens[0] != "bench/timeline":
                continue
            for i, token in enumerate(tokens):
                if token in ("-o", "--out") and i + 1 < len(tokens):
                    outputs.append(tokens[i + 1])
                elif token.startswith("--out="):
                    outputs.append(token[len("--out="):])
    return outputs


def is_picture(path):
    """A PNG or SVG file with more in it than a header."""
    if not path.is_file() or path.stat().st_size < 2000:
        return False
    head = path.read_bytes()[:400]
    return head.startswith(b"\x89PNG\r\n\x1a\n") if path.suffix == ".png" else b"<svg" in head


class Runner:
    """Runs the marked blocks of one file in a scratch mirror of the repository,
    with TMPDIR pointing at a folder of its own."""

    def __init__(self, source, build, scratch, tmp, keep_pictures=None):
        self.source = source
        self.scratch = scratch
        self.server = None
        self.server_where = None
        tmp.mkdir(parents=True)
        self.env = dict(os.environ, TMPDIR=str(tmp))
        self.keep_pictures = keep_pictures

    def stop_server(self):
        if self.server is None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            code = self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
            code = "still running 10 s after SIGTERM"
        if code not in (0, 1):
            fail(self.server_where, f"server ended with {code} after SIGTERM")
        self.server = None

    def start_server(self, where, command):
        self.stop_server()
        log = open(self.scratch / "server-stderr.txt", "w")
        self.server = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.scratch,
                                       stdout=subprocess.PIPE, stderr=log, text=True,
                                       env=self.env)
        self.server_where = where
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.server.stdout.readline()
            if not line or line.startswith("listening on"):
                break
        if not line.startswith("listening on"):
            fail(where, f"server did not print 'listening on': {command}")
            self.stop_server()

    def expand(self, word):
        """A word of a command as bash expands it in this runner's environment."""
        # Quoted as the lab quotes it: variables expand, nothing is split.
        result = subprocess.run(["bash", "-c", f'printf "%s" "{word}"'], cwd=self.scratch,
                                env=self.env, text=True, capture_output=True)
        return self.scratch / result.stdout

    def run(self, where, command, should_fail):
        """Runs one block; returns how many pictures it drew."""
        pictures = [self.expand(out) for out in picture_outputs(command)]
        for picture in pictures:
            # Through the mirror's links, a path under labs/ is the repository's file.
            if picture.resolve().is_relative_to(self.source):
                fail(where, f"this would draw into the repository ({picture.resolve()}): "
                            f"write under \"${{TMPDIR:-/tmp}}\"; not run: {command}")
                return 0
        for picture in pictures:
            picture.unlink(missing_ok=True)
        try:
            result = subprocess.run(["bash", "-c", command], cwd=self.scratch, text=True,
                                    capture_output=True, timeout=120, env=self.env)
        except subprocess.TimeoutExpired:
            fail(where, f"timed out after 120 s: {command}")
            return 0
        if should_fail and result.returncode == 0:
            fail(where, f"expected this to fail, it succeeded: {command}")
        if not should_fail and result.returncode != 0:
            fail(where, f"exit {result.returncode}: {command}\n{result.stdout}{result.stderr}")
            return 0
        drawn = 0
        for picture in pictures:
            if not is_picture(picture):
                fail(where, f"bench/timeline drew no picture at {picture}: {command}\n"
                            f"{result.stderr}")
                continue
            drawn += 1
            if self.keep_pictures:
                self.keep_pictures.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(picture, self.keep_pictures / picture.name)
        return drawn


def check_mistake_rows(rel, prose, tests):
    """Each table row below a header with a "check" column names existing tests."""
    column = None
    for number, line in enumerate(prose.splitlines(), start=1):
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if "check" in c.lower()), -1)
            continue
        if column < 0 or set(line) <= set("|-: ") or column >= len(cells):
            continue
        names = re.findall(r"`([A-Z]\w+\.[A-Z]\w+)`", cells[column])
        if not names:
            fail(f"{rel}:{number}", "a mistake with no check (`Suite.Name`) that catches it")
        for name in names:
            if name not in tests:
                fail(f"{rel}:{number}", f"`{name}`: the listed check does not exist")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check_lab_picture(rel, shown, text):
    """A picture lab shows a committed PNG, small enough for the repository, and
    names the command that draws it."""
    pngs = [path for path in shown if path.suffix == ".png"]
    if not pngs:
        fail(rel, "this lab shows no picture of its loop (![...](NAME.png))")
    for path in pngs:
        if not is_picture(path):
            fail(rel, f"{path.name} is not a PNG file")
        elif path.stat().st_size > MAX_PICTURE_BYTES:
            fail(rel, f"{path.name} has {path.stat().st_size} bytes, more than "
                      f"{MAX_PICTURE_BYTES}: draw it smaller")
    if "bench/timeline" not in text:
        fail(rel, "this lab does not say which bench/timeline command drew its picture")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_free_ports(command, ports):
    """The labs name fixed ports (easy to type); the test uses free ones instead,
    the same one for every mention of a port within a file, so that runs of this
    test in several build directories at once cannot collide."""
    def swap(match):
        wanted = match.group(2)
        if wanted != "0" and wanted not in ports:
            ports[wanted] = str(free_port())
        return match.group(1) + ports.get(wanted, wanted)
    return re.sub(r"(--port[ =])(\d+)", swap, command)


def make_scratch(source, build):
    scratch = Path(tempfile.mkdtemp(prefix="muxlab-docs-"))
    for entry in source.iterdir():
        if entry.name not in ("build", ".git"):
            (scratch / entry.name).symlink_to(entry)
    (scratch / "build").mkdir()
    (scratch / "build" / "release").symlink_to(build)
    return scratch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source-dir", required=True, type=Path)
    parser.add_argument("--build-dir", required=True, type=Path)
    parser.add_argument("--no-run", action="store_true", help="check, but run no block")
    parser.add_argument("--keep-pictures", type=Path, metavar="DIR",
                        help="copy every picture the run blocks drew to DIR/LAB/ (to refresh "
                             "the committed ones)")
    parser.add_argument("--skip-dirs", default="",
                        help="top-level folders left out of this build (MUXLAB_SKIP_DIRS, "
                             "';'-separated): commands of their executables are not checked, "
                             "and a file that uses them runs none of its blocks")
    args = parser.parse_args()
    source, build = args.source_dir.resolve(), args.build_dir.resolve()

    skipped = [d for d in args.skip_dirs.split(";") if d]
    exes = Executables(source, build)
    labs = {p.name[:2] for p in (source / "labs").iterdir() if re.match(r"\d\d-", p.name)}
    tests = set()
    for cpp in source.rglob("*.cpp"):
        if "build" in cpp.relative_to(source).parts:
            continue
        for suite, name in re.findall(r"\bTEST(?:_P|_F)?\(\s*(\w+)\s*,\s*(\w+)\s*\)",
                                      cpp.read_text(errors="replace")):
            tests.add(f"{suite}.{name}")
    pitfalls = exes.all_pitfalls()
    flags = exes.all_flags()
    scratch = None if args.no_run else make_scratch(source, build)

    checked_files = ran = 0
    for md in markdown_files(source):
        rel = md.relative_to(source).as_posix()
        text = md.read_text()
        checked_files += 1
        prose = outside_fences(text)
        # Relative links.
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (md.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                fail(rel, f"broken link: {target}")
        # Inline code.
        for span in re.findall(r"`([^`\n]+)`", prose):
            for name in re.findall(r"--pitfall[ =]([a-z0-9-]+)", span):
                if name not in pitfalls:
                    fail(rel, f"`--pitfall {name}`: no server has this pitfall")
            m = re.fullmatch(r"([A-Z]\w+)\.([A-Z]\w+)", span.strip())
            if m and span.strip() not in tests:
                fail(rel, f"`{span}`: no such test in the sources")
            if rel.startswith(OWNED):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span):
                    if flag not in flags and not flag.startswith("--gtest"):
                        fail(rel, f"`{flag}`: not a flag of any of our executables")
        if rel == MISTAKES:
            check_mistake_rows(rel, prose, tests)
        # Command blocks.
        uses_skipped = any(f"build/release/{d}/" in text for d in skipped)
        if uses_skipped:
            print(f"note: {rel}: uses a folder left out of this build, its blocks are not run")
        runner = None
        if scratch and not uses_skipped:
            keep = args.keep_pictures / md.parent.name if args.keep_pictures else None
            runner = Runner(source, build, scratch, scratch / "tmp" / str(checked_files), keep)
        shown = [(md.parent / target).resolve() for target in IMAGE.findall(prose)
                 if not re.match(r"^[a-z]+:", target)]
        before = {path: digest(path) for path in shown}
        picture_lab = rel.startswith("labs/") and md.name == "README.md" and \
            md.parent.name[:2] in PICTURE_LABS and md.parent.parent.name == "labs"
        if picture_lab:
            check_lab_picture(rel, shown, text)
        drawn = 0
        ports = {}
        for line_no, lang, marks, body in fenced_blocks(text):
            if lang not in COMMAND_LANGS:
                continue
            for offset, line in enumerate(body):
                where = f"{rel}:{line_no + offset + 1}"
                for tokens in split_commands(line.lstrip("$ ")):
                    if not any(t.startswith(f"build/release/{d}/") for t in tokens for d in skipped):
                        check_command(where, tokens, exes, labs)
            if runner is None or lang != "sh":
                continue
            where = f"{rel}:{line_no}"
            command = with_free_ports("\n".join(body), ports)
            if "server" in marks:
                runner.start_server(where, command)
            else:
                drawn += runner.run(where, command, "fails" in marks)
            ran += 1
        if runner:
            runner.stop_server()
            if picture_lab and not drawn:
                fail(rel, "no run block drew this lab's picture (a ```sh block with "
                          "bench/timeline ... -o OUT.png)")
        for path, was in before.items():
            if digest(path) != was:
                fail(rel, f"a command of this file changed {os.path.relpath(path, source)}, "
                          "which the file shows (write under \"${TMPDIR:-/tmp}\" instead)")

    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"checked {checked_files} Markdown files, ran {ran} command blocks, "
          f"knew {len(tests)} tests, {len(pitfalls)} pitfalls")
    for error in errors:
        print("ERROR", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
