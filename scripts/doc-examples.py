#!/usr/bin/env python3
"""Lists public types (structs, enums, traits) whose doc comment has no code
example and no "Example:" link to one: `python3 scripts/doc-examples.py src`.
Exits 1 when any is missing."""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
missing = []
total = 0
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(d, f)
        lines = open(path).read().split("\n")
        in_test = False
        for i, line in enumerate(lines):
            if line.startswith("#[cfg(test)]"):
                in_test = True
            m = re.match(r"pub (struct|enum|trait) (\w+)", line)
            if not m or in_test:
                continue
            total += 1
            j = i - 1
            doc = []
            # Doc lines and attributes; an attribute spread over lines
            # (`#[command(` ... `)]`) is skipped whole, nothing else.
            while j >= 0:
                if lines[j].startswith(("///", "#[")):
                    doc.append(lines[j])
                    j -= 1
                elif lines[j].startswith(")]"):
                    k = j - 1
                    while k >= 0 and lines[k].startswith("    "):
                        k -= 1
                    if k < 0 or not lines[k].startswith("#[") or lines[k].rstrip().endswith("]"):
                        break
                    j = k
                else:
                    break
            text = "\n".join(doc)
            if "```" not in text and "Example:" not in text:
                missing.append(f"{path}:{i+1} {m.group(2)}")
print(f"{total - len(missing)} of {total} public types have an example or a link to one")
for m in sorted(missing):
    print("  missing:", m)
sys.exit(1 if missing else 0)
