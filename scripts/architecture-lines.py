#!/usr/bin/env python3
"""Fails when a top-level module of src/ (a directory or a .rs file, lib.rs
aside) has no line in the layer diagram of docs/ARCHITECTURE.md (a line
starting with ` <module>/` or ` <module>.rs`), so the page cannot drift
from the code: `python3 scripts/architecture-lines.py src docs/ARCHITECTURE.md`."""
import os, re, sys

root, page = sys.argv[1], sys.argv[2]
mods = sorted({f[:-3] if f.endswith('.rs') else f for f in os.listdir(root)
               if (f.endswith('.rs') and f != 'lib.rs') or os.path.isdir(os.path.join(root, f))})
text = open(page).read()
missing = [m for m in mods
           if not re.search(rf'^\s{{1,3}}{re.escape(m)}(/|\.rs)\s', text, re.M)]
if missing:
    print(f"{page} has no line for: {', '.join(missing)}")
    sys.exit(1)
print(f"{page}: a line for each of the {len(mods)} top-level modules")
