#!/usr/bin/env python3
"""Fails when a top-level module of a crate (a directory or a .rs file under
its src/, lib.rs, main.rs and bin/ aside) has no line in a diagram of
docs/ARCHITECTURE.md (a line starting with ` <module>/` or ` <module>.rs`),
so the page cannot drift from the code:
`python3 scripts/architecture-lines.py docs/ARCHITECTURE.md src testca/src ...`."""
import os, re, sys

page, roots = sys.argv[1], sys.argv[2:]
text = open(page).read()
failed = False
for root in roots:
    mods = sorted({f[:-3] if f.endswith('.rs') else f for f in os.listdir(root)
                   if (f.endswith('.rs') and f not in ('lib.rs', 'main.rs'))
                   or (os.path.isdir(os.path.join(root, f)) and f != 'bin')})
    missing = [m for m in mods
               if not re.search(rf'^\s{{0,3}}{re.escape(m)}(/|\.rs)\s', text, re.M)]
    if missing:
        print(f"{page} has no line for {root}: {', '.join(missing)}")
        failed = True
    else:
        print(f"{page}: a line for each of the {len(mods)} top-level modules of {root}")
sys.exit(1 if failed else 0)
