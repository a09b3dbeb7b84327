#!/usr/bin/env python3
"""Lists the longest Rust functions under src/ (or the paths given), to keep each short enough
to read at once.

A function is counted from the line of its `fn` keyword to the line of the brace that closes its
body, blank and comment lines included (what a reader has to scroll through). Braces inside
strings, chars and comments do not count. Functions inside `#[cfg(test)]` modules are counted too
unless --no-tests is given.

    scripts/function-lengths.py [--max N] [--top K] [--no-tests] [PATH ...]

Exits 1 when a function is longer than --max (default 100), printing each one.
"""

import argparse
import re
import sys
from pathlib import Path

FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def strip_code(text):
    """The text with strings, chars and comments blanked (same length, newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + len(hashes) + 2)
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path, skip_tests):
    code = strip_code(path.read_text())
    test_ranges = []
    if skip_tests:
        for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", code):
            test_ranges.append((m.end() - 1, match_brace(code, m.end() - 1)))
    for m in FN.finditer(code):
        body = find_body(code, m.end())
        if body is None:
            continue  # a declaration without a body (trait method)
        if any(a <= m.start() <= b for a, b in test_ranges):
            continue
        end = match_brace(code, body)
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, end) + 1
        yield last - first + 1, f"{path}:{first}", m.group(1)


def find_body(code, i):
    """The index of the `{` opening the body of the fn whose signature starts at i, or None."""
    depth = 0
    while i < len(code):
        c = code[i]
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
        elif c == ";" and depth <= 0:
            return None
        elif c == "{" and depth <= 0:
            return i
        i += 1
    return None


def match_brace(code, i):
    depth = 0
    while i < len(code):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(code) - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=["src"])
    ap.add_argument("--max", type=int, default=100)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--no-tests", action="store_true")
    args = ap.parse_args()
    found = []
    for p in args.paths:
        files = [Path(p)] if Path(p).is_file() else sorted(Path(p).rglob("*.rs"))
        for f in files:
            found.extend(functions(f, args.no_tests))
    found.sort(reverse=True)
    print(f"{len(found)} functions; the longest:")
    for lines, where, name in found[: args.top]:
        print(f"  {lines:4} lines  {name}  {where}")
    over = [f for f in found if f[0] > args.max]
    for lines, where, name in over:
        print(f"over {args.max}: {name} ({lines} lines) at {where}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
